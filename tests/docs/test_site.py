"""The documentation site builds strictly: a broken link or anchor, a page missing from the nav or an
included example file that is gone fails the build (and so CI), as it would fail `mkdocs build --strict`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import REPO


def test_site_builds_strictly_without_warnings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=REPO,
        # Material's banner about MkDocs 2 is not about this site; without it, any output line is ours.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    warnings = [line for line in output.splitlines() if line.startswith("WARNING")]
    assert warnings == [], output
    assert (site / "index.html").is_file()
