"""Every customer's name and instances (active, connection bindings), read from the customer files and kept
until a file changes.

The Integrations page lists every instance, including those with no DAG yet (a config problem, or not
deployed). Parsing 1,000 YAML files per page load would cost most of the load; a file is parsed again only
when its size, mtime or inode changed, so a load stats the folder and re-reads what was edited.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from b2b_integrations.config.base import IDENT_PATTERN
from b2b_integrations.config.loader import CUSTOMERS_DIR, yaml_files

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class InstanceEntry:
    integration: str
    active: bool
    connections: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomerEntry:
    id: str
    name: str
    instances: tuple[InstanceEntry, ...]


def _entry(customer: str, data: Any) -> CustomerEntry:
    data = data if isinstance(data, dict) else {}
    name = data.get("name") if isinstance(data.get("name"), str) else customer
    blocks = data.get("integrations") if isinstance(data.get("integrations"), dict) else {}
    instances = []
    for integration, settings in sorted(blocks.items(), key=lambda kv: str(kv[0])):
        if not re.fullmatch(IDENT_PATTERN, str(integration)):
            continue  # the loader reports it; it never becomes an instance
        settings = settings if isinstance(settings, dict) else {}
        bound = settings.get("connections") if isinstance(settings.get("connections"), dict) else {}
        instances.append(
            InstanceEntry(
                str(integration),
                settings.get("active") is not False,
                {str(k): v for k, v in bound.items() if isinstance(v, str)},
            )
        )
    return CustomerEntry(customer, name, tuple(instances))


class CustomerIndex:
    """``entries()``: every customer file's entry, re-parsed only when the file changed."""

    def __init__(self, include_dir: Path) -> None:
        self.include_dir = Path(include_dir)
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int, int], CustomerEntry]] = {}

    def entries(self) -> list[CustomerEntry]:
        found: dict[Path, tuple[tuple[int, int, int], CustomerEntry]] = {}
        for path in yaml_files(self.include_dir / CUSTOMERS_DIR):
            if not re.fullmatch(IDENT_PATTERN, path.stem):
                continue
            try:
                st = path.stat()
            except OSError:
                continue  # removed between listing and stat
            stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
            with self._lock:
                cached = self._cache.get(path)
            if cached is None or cached[0] != stamp:
                try:
                    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - safe loader
                except (OSError, UnicodeDecodeError, yaml.YAMLError):
                    data = None  # the loader reports why; the customer still shows, as a config problem
                cached = (stamp, _entry(path.stem, data))
            found[path] = cached
        with self._lock:
            self._cache = found
        return [entry for _, entry in sorted(found.values(), key=lambda item: item[1].id)]
