"""Transforms the monitors e2e test steers from outside through files (allow-listed there via
B2B_TRANSFORM_PREFIXES): a run that waits to be released, and a run that fails until told to succeed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def hold(frame: Any, *, release_file: str, max_seconds: float = 900) -> list[dict[str, Any]]:
    """Keep the run going until ``release_file`` exists (a flow made late on purpose)."""
    deadline = time.monotonic() + max_seconds
    while not Path(release_file).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release_file} never appeared")
        time.sleep(0.5)
    return []


def flip(frame: Any, *, ok_file: str) -> list[dict[str, Any]]:
    """Fail until ``ok_file`` exists (a flow made to fail repeatedly, then to recover)."""
    if not Path(ok_file).exists():
        raise ValueError("the partner API is down (made to fail by the test)")
    return []
