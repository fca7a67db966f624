"""Customer files as documents to edit: read, replace one integration's block, write back (pure).

The customer file stays the source of truth (the factory, ``validate`` and git-kept folders read it as
before), so an edit must keep what a person wrote around the changed block: ruamel.yaml's round trip keeps
comments and key order; only the replaced block is written anew.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

_NO_VALUE = object()


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long value onto a second line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def parse(text: str) -> CommentedMap:
    """The round-trip document of a customer file (an empty mapping for an empty file)."""
    data = _yaml().load(text) if text.strip() else None
    if data is None:
        return CommentedMap()
    if not isinstance(data, dict):
        raise ValueError("expected a mapping of keys at the top of the file")
    return data


def dump(document: Any) -> str:
    out = io.StringIO()
    _yaml().dump(document, out)
    return out.getvalue()


def plain(value: Any) -> Any:
    """Round-trip containers as plain dicts and lists (what JSON answers and comparisons need)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        # ruamel's scalar subclasses (ScalarFloat, quoted strings) as the plain type
        for kind in (bool, int, float, str):
            if isinstance(value, kind):
                return kind(value)
    return value


def integration_block(document: CommentedMap, integration: str) -> dict[str, Any] | None:
    """The customer's settings for one integration, as plain data; None if it has none."""
    integrations = document.get("integrations")
    if not isinstance(integrations, dict) or integration not in integrations:
        return None
    block = integrations[integration]
    return plain(block) if block is not None else {}


def with_integration(
    document: CommentedMap, integration: str, settings: dict[str, Any] | None
) -> CommentedMap:
    """A copy of ``document`` with one integration's block replaced (None removes it)."""
    changed = copy.deepcopy(document)
    integrations = changed.get("integrations")
    if not isinstance(integrations, dict):
        integrations = CommentedMap()
        changed["integrations"] = integrations
    if settings is None:
        integrations.pop(integration, None)
    else:
        integrations[integration] = _merge(integrations.get(integration), settings)
    return changed


def _merge(existing: Any, new: Any) -> Any:
    """``new``, reusing the nodes of ``existing`` where the value is unchanged, so what was not changed keeps
    its comments, quoting and key order."""
    if isinstance(existing, CommentedMap) and isinstance(new, dict):
        for key in [k for k in existing if k not in new]:
            del existing[key]
        for key, value in new.items():
            existing[key] = _merge(existing[key], value) if key in existing else value
        return existing
    old = plain(existing)
    return existing if old == new and type(old) is type(new) else new


def with_header(document: CommentedMap, header: dict[str, Any]) -> CommentedMap:
    """A copy with the customer's own keys (everything but ``integrations``) replaced by ``header``."""
    changed = copy.deepcopy(document)
    for key in [k for k in changed if k != "integrations"]:
        if key not in header:
            del changed[key]
    for key, value in header.items():
        if key != "integrations":
            changed[key] = value
    if "integrations" not in changed:
        changed["integrations"] = CommentedMap()
    return changed


def etag(value: Any) -> str:
    """A strong ETag of plain data: the same content gives the same tag in every process."""
    canonical = json.dumps(
        plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:20] + '"'


def changes(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """What differs between two plain values, as ``{"path", "from", "to"}`` (a missing side left out)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            found += changes(before.get(key, _NO_VALUE), after.get(key, _NO_VALUE), sub)
        return found
    if before == after and type(before) is type(after):
        return []
    change: dict[str, Any] = {"path": path or "<instance>"}
    if before is not _NO_VALUE:
        change["from"] = before
    if after is not _NO_VALUE:
        change["to"] = after
    return [change]
