"""The processed-file ledger, kept in the destination database.

A file's ledger row is written in the same transaction as the file's rows, so "loaded" and "recorded as
loaded" can never disagree: a crash before the commit leaves neither, after it leaves both. The ledger
is keyed by (customer, integration, flow, file name, sha256), so a corrected re-upload under the same name
is imported again, while a re-delivery of identical content is not.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Any

from b2b_integrations.state.ddl import create_tables

LEDGER_TABLE = "b2b_file_ledger"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    customer_id VARCHAR(60) NOT NULL,
    integration VARCHAR(60) NOT NULL,
    flow VARCHAR(60) NOT NULL,
    file_name VARCHAR(255) NOT NULL,
    sha256 CHAR(64) NOT NULL,
    size_bytes BIGINT NOT NULL,
    mtime BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    rows_loaded INTEGER NOT NULL,
    rows_quarantined INTEGER NOT NULL,
    detail VARCHAR(1000),
    processed_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (customer_id, integration, flow, file_name, sha256)
)
"""


@dataclass(frozen=True)
class LedgerEntry:
    customer_id: str
    integration: str
    flow: str
    file_name: str
    sha256: str
    size_bytes: int
    mtime: int
    status: str  # "loaded" or "failed"
    rows_loaded: int
    rows_quarantined: int
    detail: str | None
    processed_at: str


def ensure_ledger(conn: Any) -> None:
    create_tables(conn, [_CREATE], LEDGER_TABLE)


def done_files(
    conn: Any, placeholder: str, customer_id: str, integration: str, flow: str
) -> set[tuple[str, int, int]]:
    """(name, size, mtime) of every file already handled for this customer flow."""
    sql = (
        f"SELECT file_name, size_bytes, mtime FROM {LEDGER_TABLE} "
        f"WHERE customer_id = {placeholder} AND integration = {placeholder} AND flow = {placeholder}"
    )
    with closing(conn.cursor()) as cur:
        cur.execute(sql, (customer_id, integration, flow))
        rows = cur.fetchall()
    conn.commit()
    return {(name, int(size), int(mtime)) for name, size, mtime in rows}


def has_content(
    conn: Any, placeholder: str, customer_id: str, integration: str, flow: str, name: str, sha256: str
) -> bool:
    sql = (
        f"SELECT 1 FROM {LEDGER_TABLE} WHERE customer_id = {placeholder} AND integration = {placeholder} "
        f"AND flow = {placeholder} AND file_name = {placeholder} AND sha256 = {placeholder}"
    )
    with closing(conn.cursor()) as cur:
        cur.execute(sql, (customer_id, integration, flow, name, sha256))
        found = cur.fetchone() is not None
    conn.commit()
    return found


def record(cursor: Any, placeholder: str, entry: LedgerEntry) -> None:
    """Insert the entry with the caller's cursor, inside the caller's transaction."""
    values = (
        entry.customer_id,
        entry.integration,
        entry.flow,
        entry.file_name,
        entry.sha256,
        entry.size_bytes,
        entry.mtime,
        entry.status,
        entry.rows_loaded,
        entry.rows_quarantined,
        (entry.detail or "")[:1000] or None,
        entry.processed_at,
    )
    columns = (
        "customer_id, integration, flow, file_name, sha256, size_bytes, mtime, status, rows_loaded, "
        "rows_quarantined, detail, processed_at"
    )
    cursor.execute(
        f"INSERT INTO {LEDGER_TABLE} ({columns}) VALUES ({', '.join([placeholder] * len(values))})", values
    )


def record_now(conn: Any, placeholder: str, entry: LedgerEntry) -> None:
    """Record an entry in a transaction of its own (for files that failed: no rows go with it)."""
    try:
        with closing(conn.cursor()) as cur:
            record(cur, placeholder, entry)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
