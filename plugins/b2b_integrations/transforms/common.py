"""General-purpose transforms templates can use without writing Python."""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2b_integrations.errors import FatalStepError

if TYPE_CHECKING:
    import pandas as pd


def select_columns(
    frame: pd.DataFrame, *, columns: list[str] | None = None, rename: dict[str, str] | None = None
) -> pd.DataFrame:
    """Rename columns (old -> new), then keep ``columns`` (new names) in that order."""
    out = frame.rename(columns=rename or {})
    if columns is None:
        return out
    missing = [c for c in columns if c not in out.columns]
    if missing:
        raise FatalStepError(f"records lack field(s) {missing}; present: {sorted(map(str, out.columns))}")
    return out[columns]
