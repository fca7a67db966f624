"""Pointers from the demo's scripts into the docs name pages (and README sections) that exist."""

from __future__ import annotations

import re

from helpers import REPO


def _headings(markdown: str) -> list[str]:
    headings, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            headings.append(line.lstrip("#").strip())
    return headings


def test_demo_scripts_point_to_docs_that_exist() -> None:
    scripts = "".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "scripts").glob("demo*.sh")))
    pages = re.findall(r"\b(docs/[\w/.-]+\.md)\b", scripts)
    assert pages
    assert [p for p in pages if not (REPO / p).is_file()] == []
    headings = _headings((REPO / "README.md").read_text(encoding="utf-8"))
    sections = re.findall(r'README "([^"]+)"', scripts)
    missing = [s for s in sections if not any(h.startswith(s) for h in headings)]
    assert missing == [], f"scripts/demo*.sh point to README sections that do not exist: {missing}"
