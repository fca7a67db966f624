"""Pointers into README from the demo's scripts name sections that exist."""

from __future__ import annotations

import re

from helpers import REPO


def _headings(markdown: str) -> list[str]:
    headings, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{2,6} ", line):
            headings.append(line.lstrip("#").strip())
    return headings


def test_demo_scripts_point_to_readme_sections_that_exist() -> None:
    headings = _headings((REPO / "README.md").read_text(encoding="utf-8"))
    scripts = "".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "scripts").glob("demo*.sh")))
    pointers = re.findall(r'README "([^"]+)"', scripts)
    assert pointers
    missing = [p for p in pointers if not any(h.startswith(p) for h in headings)]
    assert missing == [], f"scripts/demo*.sh point to README sections that do not exist: {missing}"
