"""A customer transform for the poison-message tests (allow-listed there via B2B_TRANSFORM_PREFIXES)."""

from __future__ import annotations

from typing import Any

COLUMNS = ["id", "status", "amount_cents", "currency"]


def invoices(frame: Any, *, currencies: str) -> Any:
    """Invoice rows from invoice events; an event in a currency the customer does not bill in is an error
    (raised for the whole batch, as a customer's own validation would). Keeps the ``_b2b_*`` columns, so
    the step can run a batch in one call and the load can name each record's message."""
    accepted = currencies.split(",")
    unknown = sorted({c for c in frame["currency"] if c not in accepted})
    if unknown:
        raise ValueError(f"unknown currency {', '.join(unknown)} (accepted: {currencies})")
    ours = [c for c in frame.columns if str(c).startswith("_b2b_")]
    return frame.rename(columns={"invoice_id": "id"}).reindex(columns=[*COLUMNS, *ours])


def orders(frame: Any) -> list[dict[str, Any]]:
    """A scheduled flow's records: the second lacks its key, the third's quantity is not a number."""
    return [
        {"order_id": "O1", "qty": 1},
        {"order_id": None, "qty": 2},
        {"order_id": "O3", "qty": "three"},
        {"order_id": "O4", "qty": 4},
    ]
