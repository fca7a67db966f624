"""Values derived from the include folder's project, kept fresh for long-running processes (the API server)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from b2b_integrations.config.loader import Project, load_project

T = TypeVar("T")


class LiveProject(Generic[T]):
    """Something derived from the include folder's project, rebuilt when a YAML file changes (mtime)."""

    def __init__(self, include_dir: Path, derive: Callable[[Project], T]) -> None:
        self.include_dir = include_dir
        self._derive = derive
        self._lock = threading.Lock()
        self._fingerprint: tuple[tuple[str, int], ...] | None = None
        self._value: T | None = None

    def get(self) -> T:
        fingerprint = self._current_fingerprint()
        with self._lock:
            if fingerprint != self._fingerprint or self._value is None:
                self._value = self._derive(load_project(self.include_dir))
                self._fingerprint = fingerprint
            return self._value

    def _current_fingerprint(self) -> tuple[tuple[str, int], ...]:
        files = sorted(p for p in self.include_dir.rglob("*") if p.suffix in (".yaml", ".yml"))
        return tuple((str(p), p.stat().st_mtime_ns) for p in files)
