"""The delivery ledger: which report of which period went to which target, kept in the app database.

One row per (customer, integration, report, period, target). It is written and committed right after the
target accepted the file, one target at a time, so a task that fails on its third target and is retried
skips the first two. Failed tries are recorded too (``attempts``, ``last_error``), which tells an operator
how often a target refused before it took the file. ``sends`` counts successful sends: a forced resend
raises it, and it is part of the delivery id, so each resend gets a fresh idempotency key.

A crash after the target accepted the file but before the commit leaves no row, so the retry sends again:
delivery is at least once, and the delivery id (HTTP ``Idempotency-Key``, email ``Message-ID``) and the
atomic rename on SFTP and filesystems let receivers turn that into once (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from b2b_integrations.state.ddl import create_tables

DELIVERY_TABLE = "b2b_deliveries"
DELIVERED = "delivered"
FAILED = "failed"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {DELIVERY_TABLE} (
    customer_id VARCHAR(60) NOT NULL,
    integration VARCHAR(60) NOT NULL,
    report VARCHAR(120) NOT NULL,
    period VARCHAR(64) NOT NULL,
    target VARCHAR(60) NOT NULL,
    target_type VARCHAR(16) NOT NULL,
    flow VARCHAR(60) NOT NULL,
    status VARCHAR(16) NOT NULL,
    file_name VARCHAR(255),
    sha256 CHAR(64),
    size_bytes BIGINT,
    receipt TEXT,
    attempts INTEGER NOT NULL,
    sends INTEGER NOT NULL,
    last_error VARCHAR(1000),
    delivered_at VARCHAR(32),
    updated_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (customer_id, integration, report, period, target)
)
"""
_WHERE = "customer_id = {p} AND integration = {p} AND report = {p} AND period = {p} AND target = {p}"


@dataclass(frozen=True)
class DeliveryKey:
    """One report of one period to one target of one customer's integration."""

    customer_id: str
    integration: str
    report: str
    period: str
    target: str

    def values(self) -> tuple[str, str, str, str, str]:
        return (self.customer_id, self.integration, self.report, self.period, self.target)


@dataclass(frozen=True)
class DeliveryRecord:
    """The ledger row of a key."""

    status: str
    sha256: str | None
    size_bytes: int | None
    receipt: dict[str, Any]
    attempts: int
    sends: int
    last_error: str | None
    delivered_at: str | None

    @property
    def delivered(self) -> bool:
        """Whether the target has had the report (a later failed forced resend does not undo that)."""
        return self.sends > 0


def ensure_table(conn: Any) -> None:
    create_tables(conn, [_CREATE], DELIVERY_TABLE)


def lookup(conn: Any, placeholder: str, key: DeliveryKey) -> DeliveryRecord | None:
    """The row of ``key``, or None if the target was never tried for it (own short transaction)."""
    sql = (
        f"SELECT status, sha256, size_bytes, receipt, attempts, sends, last_error, delivered_at "
        f"FROM {DELIVERY_TABLE} WHERE {_WHERE.format(p=placeholder)}"
    )
    with closing(conn.cursor()) as cur:
        cur.execute(sql, key.values())
        row = cur.fetchone()
    conn.commit()
    if row is None:
        return None
    status, sha256, size, receipt, attempts, sends, last_error, delivered_at = row
    return DeliveryRecord(
        status=status,
        sha256=sha256,
        size_bytes=int(size) if size is not None else None,
        receipt=json.loads(receipt) if receipt else {},
        attempts=int(attempts),
        sends=int(sends),
        last_error=last_error,
        delivered_at=delivered_at,
    )


def record_delivered(
    conn: Any,
    placeholder: str,
    key: DeliveryKey,
    *,
    target_type: str,
    flow: str,
    file_name: str,
    sha256: str,
    size_bytes: int,
    receipt: dict[str, Any],
) -> None:
    """Record a successful send and commit at once."""
    now = _now()
    values = {
        "target_type": target_type,
        "flow": flow,
        "status": DELIVERED,
        "file_name": file_name,
        "sha256": sha256,
        "size_bytes": size_bytes,
        "receipt": json.dumps(receipt, sort_keys=True, default=str),
        "last_error": None,
        "delivered_at": now,
        "updated_at": now,
    }
    _update_or_insert(conn, placeholder, key, values, "attempts = attempts + 1, sends = sends + 1", sends=1)


def record_failed(
    conn: Any, placeholder: str, key: DeliveryKey, *, target_type: str, flow: str, error: str
) -> None:
    """Record a failed try (the error must already be free of secrets) and commit at once.

    The status of a row delivered before stays ``delivered``: a failed forced resend does not undo the
    earlier delivery; ``last_error`` shows the failure.
    """
    values = {"target_type": target_type, "flow": flow, "last_error": error[:1000], "updated_at": _now()}
    _update_or_insert(conn, placeholder, key, values, "attempts = attempts + 1", sends=0, status=FAILED)


def _update_or_insert(
    conn: Any,
    placeholder: str,
    key: DeliveryKey,
    values: dict[str, Any],
    counters: str,
    sends: int,
    status: str | None = None,
) -> None:
    """UPDATE the key's row, or INSERT it if there is none: portable across databases, one transaction."""
    assignments = ", ".join(f"{column} = {placeholder}" for column in values)
    update = f"UPDATE {DELIVERY_TABLE} SET {assignments}, {counters} WHERE {_WHERE.format(p=placeholder)}"
    row = {**values, **({"status": status} if status else {}), "attempts": 1, "sends": sends}
    columns = ["customer_id", "integration", "report", "period", "target", *row]
    insert = (
        f"INSERT INTO {DELIVERY_TABLE} ({', '.join(columns)}) "
        f"VALUES ({', '.join([placeholder] * len(columns))})"
    )
    try:
        with closing(conn.cursor()) as cur:
            cur.execute(update, (*values.values(), *key.values()))
            if cur.rowcount == 0:
                cur.execute(insert, (*key.values(), *row.values()))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
