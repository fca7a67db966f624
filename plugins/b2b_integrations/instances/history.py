"""Every version of every instance: who changed it, when, what changed, and the settings themselves.

One append-only JSON-lines file per instance under ``<B2B_DATA_DIR>/instances/<customer>/<integration>.jsonl``
(``B2B_INSTANCES_HISTORY_DIR`` moves it), written only while the customer's lock is held. A change made
to the YAML file directly (an engineer's edit, a git pull) is recorded as a version by ``file`` the next
time the store reads that instance, so the history has no gaps whatever the path of a change was.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from b2b_integrations.staging import data_dir

FILE_EDIT = "file"
"""The author of a version the store found in the file without having written it."""


@dataclass(frozen=True)
class Version:
    """One kept version of an instance (``settings`` None: the instance was deleted by this version)."""

    number: int
    at: str
    by: str
    action: str
    etag: str | None
    settings: dict[str, Any] | None
    changes: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.number,
            "at": self.at,
            "by": self.by,
            "action": self.action,
            "etag": self.etag,
            "changes": self.changes,
        }


def default_history_dir() -> Path:
    env = os.environ.get("B2B_INSTANCES_HISTORY_DIR", "").strip()
    return Path(env) if env else data_dir() / "instances"


class History:
    """The version files, and the per-customer lock every write of a customer's file holds."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _file(self, customer: str, integration: str) -> Path:
        return self.root / customer / f"{integration}.jsonl"

    @contextmanager
    def locked(self, customer: str) -> Iterator[None]:
        """Exclusive across processes on this host and hosts sharing the folder with working POSIX locks."""
        folder = self.root / customer
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def versions(self, customer: str, integration: str) -> list[Version]:
        path = self._file(customer, integration)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-append: the versions before it stand
            found.append(
                Version(
                    number=int(raw["version"]),
                    at=raw["at"],
                    by=raw["by"],
                    action=raw["action"],
                    etag=raw.get("etag"),
                    settings=raw.get("settings"),
                    changes=raw.get("changes", []),
                )
            )
        return found

    def latest(self, customer: str, integration: str) -> Version | None:
        versions = self.versions(customer, integration)
        return versions[-1] if versions else None

    def append(
        self,
        customer: str,
        integration: str,
        *,
        by: str,
        action: str,
        etag: str | None,
        settings: dict[str, Any] | None,
        changes: list[dict[str, Any]],
    ) -> Version:
        """Record a new version (the caller holds the customer's lock)."""
        previous = self.latest(customer, integration)
        version = Version(
            number=(previous.number + 1) if previous else 1,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            by=by,
            action=action,
            etag=etag,
            settings=settings,
            changes=changes,
        )
        path = self._file(customer, integration)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {**version.summary(), "settings": settings},
            ensure_ascii=False,
            separators=(",", ":"),
            default=str,
        )
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return version
