"""The processed-file ledger, kept in the destination database.

A file's ledger row is written in the same transaction as the file's rows, so "loaded" and "recorded as
loaded" can never disagree: a crash before the commit leaves neither, after it leaves both. The ledger
is keyed by (customer, integration, flow, file name, sha256), so a corrected re-upload under the same name
is imported again, while a re-delivery of identical content is not.

Each row records the outcome (``status``). Only a ``loaded`` row means "done": a file that failed (say,
every record refused by a schema since fixed) is tried again when it appears again, and its row is then
updated in place, to ``loaded`` or to the latest failure. A failure never overwrites a ``loaded`` row.
Files refused by name are never read, and are recorded with sha256 ``-``.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Any

from b2b_integrations.state.ddl import create_tables

LEDGER_TABLE = "b2b_file_ledger"
LOADED = "loaded"
FAILED = "failed"
NOT_READ = "-"
"""The sha256 recorded for a file that was refused without being read (its name was unusable)."""

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
    status: str  # LOADED or FAILED
    rows_loaded: int
    rows_quarantined: int
    detail: str | None
    processed_at: str


def ensure_ledger(conn: Any) -> None:
    create_tables(conn, [_CREATE], LEDGER_TABLE)


_KEY = "customer_id = {p} AND integration = {p} AND flow = {p} AND file_name = {p} AND sha256 = {p}"


def done_files(
    conn: Any, placeholder: str, customer_id: str, integration: str, flow: str
) -> set[tuple[str, int, int]]:
    """(name, size, mtime) of every file already loaded for this customer flow (failed ones are not done)."""
    sql = (
        f"SELECT file_name, size_bytes, mtime FROM {LEDGER_TABLE} WHERE customer_id = {placeholder} "
        f"AND integration = {placeholder} AND flow = {placeholder} AND status = {placeholder}"
    )
    with closing(conn.cursor()) as cur:
        cur.execute(sql, (customer_id, integration, flow, LOADED))
        rows = cur.fetchall()
    conn.commit()
    return {(name, int(size), int(mtime)) for name, size, mtime in rows}


def was_loaded(
    conn: Any, placeholder: str, customer_id: str, integration: str, flow: str, name: str, sha256: str
) -> bool:
    """Whether this name with this content was loaded before (a failed try does not count)."""
    sql = f"SELECT 1 FROM {LEDGER_TABLE} WHERE {_KEY.format(p=placeholder)} AND status = {placeholder}"
    with closing(conn.cursor()) as cur:
        cur.execute(sql, (customer_id, integration, flow, name, sha256, LOADED))
        found = cur.fetchone() is not None
    conn.commit()
    return found


def record(cursor: Any, placeholder: str, entry: LedgerEntry) -> None:
    """Record the outcome with the caller's cursor, inside the caller's transaction.

    The row of an earlier try of the same (name, sha256) is updated, not duplicated (UPDATE, then INSERT
    if there was none: portable across databases). A failure leaves a ``loaded`` row as it is.
    """
    key = (entry.customer_id, entry.integration, entry.flow, entry.file_name, entry.sha256)
    outcome = {
        "size_bytes": entry.size_bytes,
        "mtime": entry.mtime,
        "status": entry.status,
        "rows_loaded": entry.rows_loaded,
        "rows_quarantined": entry.rows_quarantined,
        "detail": (entry.detail or "")[:1000] or None,
        "processed_at": entry.processed_at,
    }
    where = _KEY.format(p=placeholder)
    assignments = ", ".join(f"{column} = {placeholder}" for column in outcome)
    update = f"UPDATE {LEDGER_TABLE} SET {assignments} WHERE {where}"
    params: tuple[Any, ...] = (*outcome.values(), *key)
    if entry.status != LOADED:
        update += f" AND status <> {placeholder}"
        params += (LOADED,)
    cursor.execute(update, params)
    if cursor.rowcount:
        return
    cursor.execute(f"SELECT 1 FROM {LEDGER_TABLE} WHERE {where}", key)
    if cursor.fetchone() is not None:
        return  # loaded before: a later failure of the same content does not undo that
    columns = ["customer_id", "integration", "flow", "file_name", "sha256", *outcome]
    cursor.execute(
        f"INSERT INTO {LEDGER_TABLE} ({', '.join(columns)}) VALUES ({', '.join([placeholder] * len(columns))})",
        (*key, *outcome.values()),
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
