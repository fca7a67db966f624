"""Transforms used by the demo integrations in include/. Deterministic, so tests can check their output."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def generate_inventory(
    frame: pd.DataFrame | None, *, warehouse: str, sku_count: int, as_of: str
) -> list[dict[str, Any]]:
    """Stand-in for a source system: ``sku_count`` stock levels for one warehouse, stable per day."""
    rows = []
    for i in range(1, sku_count + 1):
        sku = f"SKU-{i:04d}"
        digest = hashlib.sha256(f"{warehouse}|{sku}|{as_of}".encode()).digest()
        rows.append({"customer_id": warehouse, "sku": sku, "on_hand": digest[0] % 50, "as_of": as_of})
    return rows


def flag_low_stock(frame: pd.DataFrame, *, threshold: int) -> pd.DataFrame:
    """Add ``low_stock`` (on_hand below the customer's threshold)."""
    out = frame.copy()
    out["low_stock"] = out["on_hand"] < threshold
    return out


def only_low_stock(frame: pd.DataFrame, **_: Any) -> pd.DataFrame:
    """Keep the rows flagged low on stock."""
    return frame[frame["low_stock"].astype(bool)]
