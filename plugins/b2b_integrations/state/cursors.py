"""Incremental-sync cursors and quarantined records, kept in the destination database.

A cursor row is written in the same transaction as the records it covers, so the next run starts where
the last *committed* load ended: a run that dies mid-way leaves the old cursor, and its retry fetches the
same changes again (upserts by key make that harmless). Records that fail validation are kept in
``b2b_quarantine`` with their reasons, in that same transaction.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from b2b_integrations.state.ddl import create_tables

CURSOR_TABLE = "b2b_sync_cursors"
QUARANTINE_TABLE = "b2b_quarantine"

_CREATE = (
    f"""
CREATE TABLE IF NOT EXISTS {CURSOR_TABLE} (
    customer_id VARCHAR(60) NOT NULL,
    integration VARCHAR(60) NOT NULL,
    flow VARCHAR(60) NOT NULL,
    step_id VARCHAR(60) NOT NULL,
    cursor_value VARCHAR(255),
    updated_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (customer_id, integration, flow, step_id)
)
""",
    f"""
CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (
    customer_id VARCHAR(60) NOT NULL,
    integration VARCHAR(60) NOT NULL,
    flow VARCHAR(60) NOT NULL,
    step_id VARCHAR(60) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    source VARCHAR(1000) NOT NULL,
    record_number INTEGER NOT NULL,
    reasons TEXT NOT NULL,
    raw_record TEXT NOT NULL,
    quarantined_at VARCHAR(32) NOT NULL
)
""",
)


@dataclass(frozen=True)
class StepKey:
    """Whose cursor: one per customer x integration x flow x step."""

    customer_id: str
    integration: str
    flow: str
    step_id: str

    def values(self) -> tuple[str, str, str, str]:
        return (self.customer_id, self.integration, self.flow, self.step_id)


def ensure_tables(conn: Any) -> None:
    create_tables(conn, _CREATE, CURSOR_TABLE)


_WHERE = "customer_id = {p} AND integration = {p} AND flow = {p} AND step_id = {p}"


def read_cursor(conn: Any, placeholder: str, key: StepKey) -> str | None:
    """The committed cursor, or None before the first successful run (own short transaction)."""
    with closing(conn.cursor()) as cur:
        cur.execute(
            f"SELECT cursor_value FROM {CURSOR_TABLE} WHERE {_WHERE.format(p=placeholder)}", key.values()
        )
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


def write_cursor(cursor: Any, placeholder: str, key: StepKey, value: str | None) -> None:
    """Replace the cursor inside the caller's transaction (DELETE + INSERT: portable across databases)."""
    cursor.execute(f"DELETE FROM {CURSOR_TABLE} WHERE {_WHERE.format(p=placeholder)}", key.values())
    cursor.execute(
        f"INSERT INTO {CURSOR_TABLE} (customer_id, integration, flow, step_id, cursor_value, updated_at) "
        f"VALUES ({', '.join([placeholder] * 6)})",
        (*key.values(), value, datetime.now(UTC).isoformat(timespec="seconds")),
    )


def quarantine_records(
    cursor: Any,
    placeholder: str,
    key: StepKey,
    run_id: str,
    records: list[tuple[str, int, list[str], Any]],
) -> None:
    """Store (source, record number, reasons, raw record) rows inside the caller's transaction."""
    if not records:
        return
    now = datetime.now(UTC).isoformat(timespec="seconds")
    cursor.executemany(
        f"INSERT INTO {QUARANTINE_TABLE} (customer_id, integration, flow, step_id, run_id, source, "
        f"record_number, reasons, raw_record, quarantined_at) VALUES ({', '.join([placeholder] * 10)})",
        [
            (*key.values(), run_id, source[:1000], number, "; ".join(reasons), _raw(raw), now)
            for source, number, reasons, raw in records
        ],
    )


def _raw(record: Any) -> str:
    return record if isinstance(record, str) else json.dumps(record, ensure_ascii=False, default=str)
