"""Incremental sync: which changes to ask for, and how far the cursor moves after a load commits.

The cursor is the greatest ``cursor_field`` value seen (e.g. ``updated_at``), kept as the API wrote it
and sent back as ``param`` (e.g. ``updated_since``) next time. APIs filter inclusively (``>=``), so the
records at the cursor itself come again; the upsert by key absorbs them, and none are missed when two
records share a timestamp. Values compare as instants when they are ISO-8601 datetimes, as numbers when
numeric, else as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from b2b_integrations.config.http_options import IncrementalOptions
from b2b_integrations.config.options import validated


@dataclass(frozen=True)
class IncrementalSync:
    cursor_field: str
    """Record field whose greatest value becomes the cursor, e.g. ``updated_at``."""
    param: str
    """Query parameter that asks for changes since the cursor, e.g. ``updated_since``."""
    start: str | None = None
    """Where the first run starts; None means a full sync."""

    def params(self, cursor: str | None) -> dict[str, str]:
        value = cursor or self.start
        return {self.param: value} if value else {}

    def advance(self, cursor: str | None, records: Iterable[Mapping[str, Any]]) -> str | None:
        """The cursor after these records: the greatest of ``cursor`` and their ``cursor_field``."""
        best, best_key = cursor, (_order_key(cursor) if cursor is not None else None)
        for record in records:
            value = record.get(self.cursor_field)
            if value is None or value == "":
                continue
            key = _order_key(value)
            if best_key is None or _greater(key, best_key):
                best, best_key = str(value), key
        return best


def incremental_from_config(config: Mapping[str, Any] | None) -> IncrementalSync | None:
    """The resolved ``incremental`` block, checked by its config model; None when there is none."""
    if not config:
        return None
    options = validated(IncrementalOptions, config)
    start = options.start
    return IncrementalSync(options.cursor_field, options.param, None if start is None else str(start))


def _order_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (2, str(value))
    if isinstance(value, int | float):
        return (1, float(value))
    text = str(value)
    try:
        # Numbers first: fromisoformat also reads digit strings such as "20240101" as dates.
        return (1, float(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return (2, text)
    return (0, parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def _greater(a: tuple[int, Any], b: tuple[int, Any]) -> bool:
    # Mixed kinds never happen with a sane API; if they do, compare as text rather than crash.
    return a[1] > b[1] if a[0] == b[0] else str(a[1]) > str(b[1])
