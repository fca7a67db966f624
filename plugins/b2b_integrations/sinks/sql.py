"""Writing rows to SQL databases: statement building (pure) and one-transaction writes (DB-API).

Our own statements rather than ``DbApiHook.insert_rows``: the load must commit all rows in one
transaction (so later features can advance a cursor or ledger in that same transaction), and the hook
commits per chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from itertools import islice
from typing import Any

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_SQL_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+(\s*,\s*\d+)?\s*\))?$")

# Connection types whose upsert syntax we know. postgres and sqlite share ON CONFLICT ... DO UPDATE.
UPSERT_DIALECTS = frozenset({"postgres", "sqlite", "mysql"})


class SqlStatementError(ValueError):
    """A table, column or type name cannot be used in a statement."""


def check_identifiers(table: str, columns: Sequence[str]) -> None:
    if not _TABLE.match(table):
        raise SqlStatementError(f"invalid table name {table!r}")
    bad = [c for c in columns if not _IDENTIFIER.match(c)]
    if bad:
        raise SqlStatementError(f"field name(s) {bad} cannot be SQL column names (letters, digits, '_')")


def create_table_statement(table: str, columns: dict[str, str], key: Sequence[str]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` from declared columns, with the key as primary key."""
    check_identifiers(table, [*columns, *key])
    bad_types = {name: t for name, t in columns.items() if not _SQL_TYPE.match(t)}
    if bad_types:
        raise SqlStatementError(f"unsupported SQL type(s) {bad_types}")
    parts = [f"{name} {sql_type}" for name, sql_type in columns.items()]
    if key:
        parts.append(f"PRIMARY KEY ({', '.join(key)})")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(parts)})"


def insert_statement(
    dialect: str, table: str, fields: Sequence[str], key: Sequence[str], upsert: bool, placeholder: str
) -> str:
    """INSERT, or an upsert that updates every non-key field of a row whose key exists."""
    check_identifiers(table, [*fields, *key])
    values = ", ".join([placeholder] * len(fields))
    sql = f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({values})"
    if not upsert:
        return sql
    if dialect not in UPSERT_DIALECTS:
        raise SqlStatementError(
            f"upsert is not supported for connection type {dialect!r}; use {sorted(UPSERT_DIALECTS)}"
        )
    missing = [k for k in key if k not in fields]
    if missing:
        raise SqlStatementError(f"key column(s) {missing} are not among the loaded fields")
    updates = [f for f in fields if f not in key]
    if dialect == "mysql":
        assignments = ", ".join(f"{f} = VALUES({f})" for f in updates) or f"{key[0]} = {key[0]}"
        return f"{sql} ON DUPLICATE KEY UPDATE {assignments}"
    if not updates:
        return f"{sql} ON CONFLICT ({', '.join(key)}) DO NOTHING"
    assignments = ", ".join(f"{f} = excluded.{f}" for f in updates)
    return f"{sql} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {assignments}"


def chunked(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    """Consecutive lists of at most ``size`` rows, pulling lazily from ``rows``."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_rows(
    conn: Any,
    statement: str,
    rows: Iterable[Sequence[Any]],
    chunk_size: int,
    progress: Callable[[int], None] | None = None,
    before_commit: Callable[[Any], None] | None = None,
) -> int:
    """Execute ``statement`` for every row in one transaction; roll back everything on any error.

    ``rows`` may be a lazy iterator (a file being parsed): it is consumed chunk by chunk, so memory stays
    bounded. ``progress(rows_done)`` is called after each chunk. ``before_commit(cursor)`` runs inside the
    same transaction, for state that must move with the rows (a ledger entry, a cursor).
    """
    done = 0
    try:
        with closing(conn.cursor()) as cur:
            for chunk in chunked(rows, chunk_size):
                cur.executemany(statement, chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done)
            if before_commit is not None:
                before_commit(cur)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return done
