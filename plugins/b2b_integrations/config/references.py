"""``${...}`` references in step options, resolved when a customer's DAG is planned.

Templates write ``${config.batch_size}``, ``${customer.id}``, ``${customer.name}`` or
``${connections.crm_api}`` inside option values. A value that is exactly one reference takes the referenced
value with its type (an integer stays an integer); a reference inside a longer string is interpolated.
``{{ ... }}`` is left alone: that is Airflow's run-time Jinja, e.g. ``{{ ds }}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_REF = re.compile(r"\$\{\s*(config|customer|connections)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_ANY_REF = re.compile(r"\$\{[^}]*\}")
CUSTOMER_FIELDS = ("id", "name")


def iter_references(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """Yield (key path, scope, name) for every reference in a nested value; malformed ones as scope ''."""
    if isinstance(value, str):
        for match in _ANY_REF.finditer(value):
            ref = _REF.fullmatch(match.group(0))
            if ref:
                yield path, ref.group(1), ref.group(2)
            else:
                yield path, "", match.group(0)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_references(item, (*path, index))


def has_reference(value: Any, scope: str | None = None) -> bool:
    """Whether a nested value references ``scope`` (e.g. ``config``; None: any scope) anywhere."""
    return any(scope is None or found == scope for _, found, _ in iter_references(value))


def resolve(value: Any, scopes: Mapping[str, Mapping[str, Any]]) -> Any:
    """Replace references to the given scopes in a nested value; other scopes are left in place.

    Callers validated every name beforehand.
    """
    if isinstance(value, str):
        whole = _REF.fullmatch(value.strip())
        if whole:
            return scopes[whole.group(1)][whole.group(2)] if whole.group(1) in scopes else value
        return _REF.sub(
            lambda m: str(scopes[m.group(1)][m.group(2)]) if m.group(1) in scopes else m.group(0), value
        )
    if isinstance(value, Mapping):
        return {key: resolve(item, scopes) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, scopes) for item in value]
    return value
