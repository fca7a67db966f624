"""The instance store: customer files in the include folder, edited one integration block at a time.

Decision (docs/ARCHITECTURE.md, "Instances live in the customer files"): the YAML files the factory and
``validate`` already read stay the only source of truth, so a change through the API reaches the DAGs the
way a deploy does, git-kept folders keep working, and there is nothing to synchronise. Every write:
- holds the customer's lock (``History.locked``), so two writers of one customer file never interleave;
- checks ``If-Match`` against the instance's ETag (a hash of its settings), so a stale writer gets 412;
- is checked by the loader (``check_customer_text``) on the file it would write, and refused whole with
  the loader's own problems (same messages and key paths as ``validate``) when it adds any;
- replaces the file atomically (a temp file in the same folder, then rename; dot-files are never read as
  customers), then appends the version to the history.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from b2b_integrations.config.base import IDENT_PATTERN
from b2b_integrations.config.loader import (
    CUSTOMERS_DIR,
    TEMPLATES_DIR,
    CustomerChecker,
    transform_prefixes_from_env,
    version_files,
    yaml_files,
)
from b2b_integrations.errors import Problem
from b2b_integrations.instances import documents
from b2b_integrations.instances.errors import (
    Conflict,
    InvalidChange,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from b2b_integrations.instances.history import FILE_EDIT, History, Version, default_history_dir

Vet = Callable[[dict[str, Any] | None, dict[str, Any]], tuple[dict[str, Any], list[Problem]]]

CUSTOMER_HISTORY = "_customer"
"""History key of the customer's own keys (name, tags, alerts): never a valid integration name."""


class TemplateCachedChecker:
    """``check_customer_text`` with the templates loaded once per version of the template files.

    Loading every template per write cost most of a write (65 s for a rollout of 1,000 instances). The
    cache key is the name, size, mtime and inode of every template and version file plus the allowed
    transform packages, taken before each check, so a template edited between two writes is seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._checker: CustomerChecker | None = None

    def __call__(self, include_dir: Path, customer: str, text: str) -> list[Problem]:
        root = Path(include_dir)
        files = [*yaml_files(root / TEMPLATES_DIR), *version_files(root)]
        key = (str(root), transform_prefixes_from_env(), *(_stamp(path) for path in files))
        with self._lock:
            if key != self._key or self._checker is None:
                self._checker, self._key = CustomerChecker(root), key
            checker = self._checker
        return checker.check(customer, text)


def _stamp(path: Path) -> tuple[object, ...]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@dataclass(frozen=True)
class InstanceRecord:
    """One customer's settings for one integration, as stored now."""

    customer: str
    integration: str
    settings: dict[str, Any]
    etag: str
    version: int


@dataclass(frozen=True)
class CustomerRecord:
    """A customer's own keys (everything but ``integrations``) and the integrations it has."""

    id: str
    header: dict[str, Any]
    etag: str
    integrations: list[str] = field(default_factory=list)


class InstanceStore:
    """Reads and writes instances in ``<include_dir>/customers/*.yaml``; see the module docstring."""

    def __init__(
        self,
        include_dir: Path,
        history: History | None = None,
        after_write: Callable[[str], None] | None = None,
        check: Callable[[Path, str, str], list[Problem]] | None = None,
    ) -> None:
        self.include_dir = Path(include_dir)
        self.history = history or History(default_history_dir())
        self._after_write = after_write
        self._check = check or TemplateCachedChecker()

    # ---- reading -------------------------------------------------------------------------------------
    def customer_ids(self) -> list[str]:
        return [
            p.stem
            for p in yaml_files(self.include_dir / CUSTOMERS_DIR)
            if re.fullmatch(IDENT_PATTERN, p.stem)
        ]

    def get_customer(self, customer: str) -> CustomerRecord:
        data = self._plain(customer)
        header = {k: v for k, v in data.items() if k != "integrations"}
        integrations = data.get("integrations")
        names = sorted(integrations) if isinstance(integrations, dict) else []
        return CustomerRecord(customer, header, documents.etag(header), names)

    def get(self, customer: str, integration: str) -> InstanceRecord:
        data = self._plain(customer)
        integrations = data.get("integrations")
        # An integration key that is not a name (a hand edit) never becomes a history path.
        valid = re.fullmatch(IDENT_PATTERN, integration) is not None
        if not valid or not isinstance(integrations, dict) or integration not in integrations:
            raise NotFound(f"customer {customer!r} has no integration {integration!r}")
        settings = integrations[integration] or {}
        if not isinstance(settings, dict):
            settings = {}
        tag = documents.etag(settings)
        latest = self.history.latest(customer, integration)
        if latest is None or latest.etag != tag:
            with self.history.locked(customer):
                latest = self._record_file_edit(customer, integration, settings)
        return InstanceRecord(customer, integration, settings, tag, latest.number if latest else 0)

    def instances(self, customer: str) -> list[InstanceRecord]:
        """Every instance whose key is a valid name (the loader reports any other key as a problem)."""
        names = self.get_customer(customer).integrations
        return [self.get(customer, name) for name in names if re.fullmatch(IDENT_PATTERN, str(name))]

    def versions(self, customer: str, integration: str) -> list[Version]:
        self._require_customer(customer)
        try:
            self.get(customer, integration)  # records a direct file edit first
        except NotFound:
            pass
        versions = self.history.versions(customer, integration)
        if not versions:
            raise NotFound(f"customer {customer!r} has no integration {integration!r}")
        return versions

    # ---- writing -------------------------------------------------------------------------------------
    def create_customer(self, customer: str, header: dict[str, Any], *, actor: str) -> CustomerRecord:
        if not re.fullmatch(IDENT_PATTERN, customer):
            raise InvalidChange(
                [
                    Problem(
                        self._shown(customer), "id", f"invalid customer id {customer!r}: use lower_snake_case"
                    )
                ]
            )
        with self.history.locked(customer):
            if self._path(customer).exists():
                raise Conflict(f"customer {customer!r} exists")
            document = documents.with_header(
                documents.parse(""), {"id": customer, **{k: v for k, v in header.items() if k != "id"}}
            )
            self._write(customer, "", document)
            self.history.append(
                customer, CUSTOMER_HISTORY, by=actor, action="create", etag=documents.etag(self._header(document)),
                settings=self._header(document), changes=documents.changes({}, self._header(document)),
            )  # fmt: skip
        return self.get_customer(customer)

    def put_customer(
        self, customer: str, header: dict[str, Any], *, if_match: str | None, actor: str
    ) -> CustomerRecord:
        with self.history.locked(customer):
            text, document = self._read(customer)
            before = self._header(document)
            self._precondition(if_match, documents.etag(before), exists=True)
            changed = documents.with_header(document, {**header, "id": customer})
            self._write(customer, text, changed, scope="")
            after = self._header(changed)
            self.history.append(
                customer, CUSTOMER_HISTORY, by=actor, action="update", etag=documents.etag(after),
                settings=after, changes=documents.changes(before, after),
            )  # fmt: skip
        return self.get_customer(customer)

    def put(
        self,
        customer: str,
        integration: str,
        settings: dict[str, Any],
        *,
        if_match: str | None,
        actor: str,
        action: str | None = None,
        vet: Vet | None = None,
    ) -> InstanceRecord:
        """Create (no ``If-Match``) or replace (``If-Match`` = its ETag) one instance.

        ``vet(current, new)`` runs under the lock with the settings as they are now and may adjust the new
        ones or refuse them (problems -> :class:`InvalidChange`): rules that depend on the caller."""
        return self._change(
            customer, integration, lambda _: settings, if_match, actor, action, require_match=True, vet=vet
        )

    def update(
        self,
        customer: str,
        integration: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        if_match: str | None,
        actor: str,
        action: str,
    ) -> InstanceRecord:
        """Read-modify-write of an existing instance under the lock; ``If-Match`` checked when given."""
        return self._change(customer, integration, change, if_match, actor, action, require_match=False)

    def delete(self, customer: str, integration: str, *, if_match: str | None, actor: str) -> Version:
        with self.history.locked(customer):
            text, document = self._read(customer)
            current = documents.integration_block(document, integration)
            if current is None:
                raise NotFound(f"customer {customer!r} has no integration {integration!r}")
            self._record_file_edit(customer, integration, current)
            self._precondition(if_match, documents.etag(current), exists=True)
            self._write(customer, text, documents.with_integration(document, integration, None), scope=None)
            return self.history.append(
                customer, integration, by=actor, action="delete", etag=None, settings=None,
                changes=documents.changes(current, {}),
            )  # fmt: skip

    def restore(
        self, customer: str, integration: str, number: int, *, if_match: str | None, actor: str
    ) -> InstanceRecord:
        wanted = next((v for v in self.versions(customer, integration) if v.number == number), None)
        if wanted is None:
            raise NotFound(f"{customer}/{integration} has no version {number}")
        if wanted.settings is None:
            raise Conflict(f"version {number} is the deletion of the instance; restore an earlier version")
        return self._change(
            customer, integration, lambda _: copy.deepcopy(wanted.settings or {}), if_match, actor,
            f"restore of version {number}", require_match=True,
        )  # fmt: skip

    # ---- internals -----------------------------------------------------------------------------------
    def _change(
        self,
        customer: str,
        integration: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        if_match: str | None,
        actor: str,
        action: str | None,
        require_match: bool,
        vet: Vet | None = None,
    ) -> InstanceRecord:
        if not re.fullmatch(IDENT_PATTERN, integration):
            raise NotFound(f"no integration {integration!r}")
        with self.history.locked(customer):
            text, document = self._read(customer)
            current = documents.integration_block(document, integration)
            if current is not None:
                self._record_file_edit(customer, integration, current)
                if require_match or if_match is not None:
                    self._precondition(if_match, documents.etag(current), exists=True)
            elif not require_match:
                raise NotFound(f"customer {customer!r} has no integration {integration!r}")
            elif if_match is not None:  # If-Match, even "*", needs a current version to match
                raise PreconditionFailed(None)
            settings = documents.plain(change(copy.deepcopy(current or {})))
            if vet is not None:
                settings, refused = vet(current, settings)
                if refused:
                    raise InvalidChange(refused)
            if current is not None and documents.etag(settings) == documents.etag(current):
                latest = self.history.latest(customer, integration)
                return InstanceRecord(
                    customer, integration, current, documents.etag(current), latest.number if latest else 0
                )
            self._write(
                customer, text, documents.with_integration(document, integration, settings), scope=integration
            )
            version = self.history.append(
                customer, integration, by=actor, action=action or ("create" if current is None else "update"),
                etag=documents.etag(settings), settings=settings, changes=documents.changes(current or {}, settings),
            )  # fmt: skip
        return InstanceRecord(customer, integration, settings, documents.etag(settings), version.number)

    def _record_file_edit(self, customer: str, integration: str, settings: dict[str, Any]) -> Version | None:
        """Record the file's content as a version when the history does not end with it (caller holds the lock)."""
        latest = self.history.latest(customer, integration)
        tag = documents.etag(settings)
        if latest is not None and latest.etag == tag:
            return latest
        before = (latest.settings or {}) if latest is not None else {}
        return self.history.append(
            customer, integration, by=FILE_EDIT, action="found in the file" if latest is None else "edited in the file",
            etag=tag, settings=settings, changes=documents.changes(before, settings),
        )  # fmt: skip

    @staticmethod
    def _precondition(if_match: str | None, current: str, exists: bool) -> None:
        if if_match is None:
            raise PreconditionRequired("send If-Match with the ETag of the version you read")
        if if_match.strip() != "*" and if_match.strip() != current:
            raise PreconditionFailed(current)

    def _path(self, customer: str) -> Path:
        folder = self.include_dir / CUSTOMERS_DIR
        for suffix in (".yaml", ".yml"):
            if (folder / f"{customer}{suffix}").is_file():
                return folder / f"{customer}{suffix}"
        return folder / f"{customer}.yaml"

    def _shown(self, customer: str) -> str:
        return f"{self.include_dir.name}/{CUSTOMERS_DIR}/{customer}.yaml"

    def _require_customer(self, customer: str) -> Path:
        path = self._path(customer)
        if not re.fullmatch(IDENT_PATTERN, customer) or not path.is_file():
            raise NotFound(f"no customer {customer!r}")
        return path

    def _plain(self, customer: str) -> dict[str, Any]:
        path = self._require_customer(customer)
        try:
            data = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except (OSError, yaml.YAMLError, ValueError) as e:
            raise Conflict(f"the customer file {self._shown(customer)} cannot be read: {e}") from e
        return data if isinstance(data, dict) else {}

    def _read(self, customer: str) -> tuple[str, Any]:
        path = self._require_customer(customer)
        text = path.read_text(encoding="utf-8")
        try:
            return text, documents.parse(text)
        except Exception as e:  # ruamel raises its own YAMLError tree and ValueError
            raise Conflict(f"the customer file {self._shown(customer)} cannot be edited: {e}") from e

    @staticmethod
    def _header(document: Any) -> dict[str, Any]:
        return {str(k): documents.plain(v) for k, v in document.items() if k != "integrations"}

    def _write(self, customer: str, old_text: str, document: Any, scope: str | None = "") -> None:
        """Check the file the change would write, refuse it if it adds problems, else replace the file.

        ``scope``: the integration changed ("" the customer's own keys; None a removal). A problem counts
        against the change when it is in that scope or was not there before the change: a problem another
        integration already had must not block an unrelated fix."""
        new_text = documents.dump(document)
        found = self._check(self.include_dir, customer, new_text)
        if found:
            before = (
                {(p.key_path, p.message) for p in self._check(self.include_dir, customer, old_text)}
                if old_text
                else set()
            )
            own = f"integrations.{scope}" if scope else None
            blocking = [
                p for p in found
                if (p.key_path, p.message) not in before
                or (own is not None and (p.key_path == own or p.key_path.startswith((own + ".", own + "["))))
                or (scope == "" and not p.key_path.startswith("integrations."))
            ]  # fmt: skip
            if blocking:
                raise InvalidChange(blocking)
        path = self._path(customer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(new_text, encoding="utf-8")
        os.replace(tmp, path)
        if self._after_write is not None:
            self._after_write(customer)
