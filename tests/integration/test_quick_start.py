"""The quick start (docs/getting-started.md), run as written against the demo, so the documented path cannot
rot.

A copy of this working tree (sharing ``.venv``) runs ``scripts/demo.sh`` on free ports. The page's quick-start
blocks are marked with comments: ``file PATH`` blocks must include that very file (a ``--8<--`` snippet line,
which the site build inlines), ``run`` blocks run in
order in bash (a ``source`` line stays in effect for the blocks after it, as in the reader's terminal), and
``until`` blocks are repeated, as the reader would, until they succeed and print every ``# expected`` line
(``...`` in one stands for any text).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO
from servers import free_port

pytestmark = pytest.mark.e2e

_BLOCK = re.compile(r"<!-- quick-start: (file (?P<file>\S+)|run|until) -->\n```\w+\n(?P<body>.*?)```", re.S)
_SKIPPED = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache"
)


def _not_copied(folder: str, names: list[str]) -> set[str]:
    """What a fresh clone lacks: the venv, caches and any demo's state (.airflow-demo/, not .airflowignore)."""
    state = {n for n in names if n.startswith(".airflow") and (Path(folder) / n).is_dir()}
    return set(_SKIPPED(folder, names)) | state


@dataclass(frozen=True)
class Block:
    kind: str  # file | run | until
    body: str
    file: str | None = None

    @property
    def expected(self) -> list[str]:
        """The ``# ...`` lines after the last command: what the block must print."""
        lines = self.body.rstrip("\n").splitlines()
        tail: list[str] = []
        while lines and lines[-1].startswith("# "):
            tail.insert(0, lines.pop()[2:])
        return tail


PAGE = Path("docs") / "getting-started.md"


def quick_start_blocks(page: str) -> list[Block]:
    start = page.index("# Quick start")
    section = page[start : page.index("\n## ", start + 1)]
    return [
        Block("file" if m["file"] else m.group(1), m["body"], m["file"]) for m in _BLOCK.finditer(section)
    ]


def _printed(expected: list[str], output: str) -> bool:
    """Every expected line is an output line; ``...`` in it stands for any text."""
    lines = output.splitlines()
    patterns = [re.compile(".*".join(re.escape(part) for part in want.split("..."))) for want in expected]
    return all(any(p.fullmatch(line.rstrip()) for line in lines) for p in patterns)


def test_page_marks_the_quick_start_blocks() -> None:
    blocks = quick_start_blocks((REPO / PAGE).read_text(encoding="utf-8"))
    assert [b.kind for b in blocks].count("file") >= 3
    assert {"run", "until"} <= {b.kind for b in blocks}
    assert all(b.expected for b in blocks if b.kind == "until")


def _start_demo(clone: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (clone / "demo.out").open("wb")
    return subprocess.Popen(
        ["bash", "scripts/demo.sh"],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop_demo(proc: subprocess.Popen[bytes]) -> None:
    # demo.sh traps TERM and stops Airflow's own process group before it exits.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=90)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_for(what: str, check, timeout: float, clone: Path):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(3)
    demo = (clone / "demo.out").read_text(errors="replace")[-3000:]
    standalone = clone / ".airflow-demo" / "standalone.log"
    tail = standalone.read_text(errors="replace")[-3000:] if standalone.exists() else ""
    raise AssertionError(
        f"timed out waiting for {what}; last attempt:\n{last}\n--- demo\n{demo}\n--- airflow\n{tail}"
    )


def test_quick_start_runs_as_written_against_the_demo(tmp_path: Path) -> None:
    stamp = REPO / ".venv" / ".b2b-installed"
    wanted = hashlib.sha256((REPO / "constraints.txt").read_bytes() + (REPO / "pyproject.toml").read_bytes())
    assert stamp.exists() and stamp.read_text().strip() == wanted.hexdigest(), (
        ".venv does not match constraints.txt/pyproject.toml: run scripts/setup.sh first"
    )
    clone = tmp_path / "repo"
    shutil.copytree(REPO, clone, ignore=_not_copied, symlinks=True)
    (clone / ".venv").symlink_to(REPO / ".venv")
    blocks = quick_start_blocks((clone / PAGE).read_text(encoding="utf-8"))
    for block in blocks:
        if block.kind == "file":
            assert block.body == f'--8<-- "{block.file}"\n', f"the page does not include {block.file} itself"
            assert (clone / str(block.file)).is_file()

    ports = {
        "B2B_DEMO_PORT": free_port(),
        "B2B_DEMO_CRM_PORT": free_port(),
        "B2B_DEMO_SFTP_PORT": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "B2B_", "PYTHONPATH"))}
    env.update({k: str(v) for k, v in ports.items()})
    demo = _start_demo(clone, env)
    try:

        def started() -> tuple[bool, str | None]:
            assert demo.poll() is None, (
                f"scripts/demo.sh exited:\n{(clone / 'demo.out').read_text(errors='replace')}"
            )
            return "Press Ctrl-C to stop." in (clone / "demo.out").read_text(errors="replace"), None

        _wait_for("the demo to start", started, 300, clone)
        sourced: list[str] = []
        for block in blocks:
            if block.kind == "file":
                continue
            script = "\n".join(["set -euo pipefail", *sourced, block.body])

            def attempt(script: str = script, block: Block = block) -> tuple[bool, str]:
                done = subprocess.run(
                    ["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=300
                )
                output = f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-2000:]}"
                return done.returncode == 0 and _printed(block.expected, done.stdout), output

            if block.kind == "run":
                ok, output = attempt()
                assert ok, f"quick-start block failed:\n{block.body}\n{output}"
            else:
                _wait_for(f"the page's block\n{block.body}", attempt, 240, clone)
            sourced += [line for line in block.body.splitlines() if line.startswith("source ")]
    finally:
        _stop_demo(demo)
    acme = (clone / "include" / "customers" / "acme.yaml").read_text(encoding="utf-8")
    assert "crm_contacts:" in acme and "stock_levels:" in acme  # a block added, nothing replaced
