"""General-purpose transforms templates can use without writing Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from b2b_integrations.errors import FatalStepError

if TYPE_CHECKING:
    import pandas as pd


def _lineage(frame: pd.DataFrame) -> list[str]:
    """Our ``_b2b_*`` columns (which inbox message a record came from). Kept by these transforms, so the
    transform step can run an inbox batch in one call and later steps can name each record's message."""
    return [str(c) for c in frame.columns if str(c).startswith("_b2b_")]


def select_columns(
    frame: pd.DataFrame, *, columns: list[str] | None = None, rename: dict[str, str] | None = None
) -> pd.DataFrame:
    """Rename columns (old -> new), then keep ``columns`` (new names) in that order (and ``_b2b_*``)."""
    out = frame.rename(columns=rename or {})
    if columns is None:
        return out
    missing = [c for c in columns if c not in out.columns]
    if missing:
        present = sorted(c for c in map(str, out.columns) if not c.startswith("_b2b_"))
        raise FatalStepError(f"records lack field(s) {missing}; present: {present}")
    return out[[*columns, *(c for c in _lineage(out) if c not in columns)]]


def map_fields(
    frame: pd.DataFrame,
    *,
    fields: dict[str, str],
    constants: dict[str, Any] | None = None,
    only: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Flat records from nested ones (e.g. webhook payloads): ``fields`` maps each output column to a dotted
    path in the record (``data.id``); ``constants`` adds fixed columns; ``only`` keeps records whose field
    (a dotted path) equals the value or is one of a list of values (e.g. ``{type: [contact.updated]}``).
    A record lacking a mapped path gets null in that column."""
    import pandas as pd

    from b2b_integrations.events.routes import matches

    records = frame.to_dict(orient="records")
    lineage = [c for c in _lineage(frame) if c not in fields and c not in (constants or {})]
    rows = []
    for record in records:
        if only and not matches(only, record):
            continue
        row = {column: _path(record, path) for column, path in fields.items()}
        rows.append({**row, **(constants or {}), **{c: record[c] for c in lineage}})
    return pd.DataFrame(rows, columns=[*fields, *(constants or {}), *lineage])


def _path(record: Any, dotted: str) -> Any:
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def keep_at_least(frame: pd.DataFrame, *, field: str, minimum: float) -> pd.DataFrame:
    """Keep records whose ``field`` (a dotted path, e.g. ``data.amount_cents``) is a number >= ``minimum``;
    records without a number there are dropped too."""
    import math

    keep = []
    for record in frame.to_dict(orient="records"):
        value = _path(record, field)
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        keep.append(number is not None and not math.isnan(number) and number >= float(minimum))
    return frame[keep].reset_index(drop=True)
