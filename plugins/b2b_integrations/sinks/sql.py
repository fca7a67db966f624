"""Writing rows to SQL databases: statement building (pure) and one-transaction writes (DB-API).

Our own statements rather than ``DbApiHook.insert_rows``: the load must commit all rows in one
transaction (so later features can advance a cursor or ledger in that same transaction), and the hook
commits per chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

from b2b_integrations.errors import FatalStepError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_SQL_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+(\s*,\s*\d+)?\s*\))?$")

# Connection types whose upsert syntax we know. postgres and sqlite share ON CONFLICT ... DO UPDATE.
UPSERT_DIALECTS = frozenset({"postgres", "sqlite", "mysql"})


class SqlStatementError(FatalStepError, ValueError):
    """A table, column or type name cannot be used in a statement (retrying cannot help)."""


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


TARGET_ALIAS = "b2b_target"


@dataclass(frozen=True)
class ConflictRule:
    """How an upsert treats a row whose key exists (two-way sync: two systems edit the same records).

    ``last_writer_by``: the existing row is updated only when the incoming value of this column (e.g.
    ``updated_at``) is newer; an older or equal one (a late or echoed change) leaves it alone.
    ``app_owned``: columns our app is the source of truth for: written when a row is created, never
    overwritten by this step.
    """

    last_writer_by: str | None = None
    app_owned: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.last_writer_by or self.app_owned)

    def updates(self, fields: Sequence[str], key: Sequence[str]) -> list[str]:
        return [f for f in fields if f not in key and f not in self.app_owned]

    def check(self, fields: Sequence[str]) -> None:
        # App-owned columns the step does not load are untouched anyway; the last-writer column must be
        # loaded, or there is nothing to compare.
        check_identifiers("t", [c for c in (self.last_writer_by, *self.app_owned) if c])
        if self.last_writer_by and self.last_writer_by not in fields:
            raise SqlStatementError(
                f"conflict.last_writer_by column {self.last_writer_by!r} is not among the loaded fields"
            )

    def on_conflict(self, key: Sequence[str], fields: Sequence[str]) -> str:
        """``ON CONFLICT (...) DO UPDATE SET ... [WHERE newer]`` (postgres, sqlite); the target table is
        aliased ``b2b_target`` by the statement."""
        updates = self.updates(fields, key)
        if not updates:
            return f"ON CONFLICT ({', '.join(key)}) DO NOTHING"
        sql = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET " + ", ".join(
            f"{f} = excluded.{f}" for f in updates
        )
        column = self.last_writer_by
        if column:
            sql += f" WHERE {TARGET_ALIAS}.{column} IS NULL OR excluded.{column} > {TARGET_ALIAS}.{column}"
        return sql


NO_RULE = ConflictRule()


def conflict_rule(config: dict[str, Any] | None) -> ConflictRule:
    """The rule of a step's ``conflict`` option (``last_writer_by``, ``app_owned``)."""
    if not config:
        return NO_RULE
    return ConflictRule(config.get("last_writer_by"), tuple(config.get("app_owned") or ()))


def insert_statement(
    dialect: str,
    table: str,
    fields: Sequence[str],
    key: Sequence[str],
    upsert: bool,
    placeholder: str,
    values_clause: str | None = None,
    rule: ConflictRule = NO_RULE,
) -> str:
    """INSERT, or an upsert that updates the non-key fields of a row whose key exists (as ``rule`` allows).

    ``values_clause`` replaces the ``(%s, %s, ...)`` row template (``%s`` for psycopg2's execute_values).
    """
    check_identifiers(table, [*fields, *key])
    values = values_clause or f"({', '.join([placeholder] * len(fields))})"
    sql = f"INSERT INTO {table} AS {TARGET_ALIAS} ({', '.join(fields)}) VALUES {values}"
    if not upsert:
        return f"INSERT INTO {table} ({', '.join(fields)}) VALUES {values}"
    if dialect not in UPSERT_DIALECTS:
        raise SqlStatementError(
            f"upsert is not supported for connection type {dialect!r}; use {sorted(UPSERT_DIALECTS)}"
        )
    missing = [k for k in key if k not in fields]
    if missing:
        raise SqlStatementError(f"key column(s) {missing} are not among the loaded fields")
    rule.check(fields)
    if dialect == "mysql":
        if rule.active:
            raise SqlStatementError("conflict rules (last_writer_by, app_owned) need postgres or sqlite")
        updates = rule.updates(fields, key)
        assignments = ", ".join(f"{f} = VALUES({f})" for f in updates) or f"{key[0]} = {key[0]}"
        return (
            f"INSERT INTO {table} ({', '.join(fields)}) VALUES {values} ON DUPLICATE KEY UPDATE {assignments}"
        )
    return f"{sql} {rule.on_conflict(key, fields)}"


class RowSink:
    """Writes batches of rows through a cursor, inside the caller's transaction."""

    def begin(self, cursor: Any) -> None:
        """Prepare (once per transaction)."""

    def write(self, cursor: Any, batch: list[Sequence[Any]]) -> None:
        raise NotImplementedError

    def finish(self, cursor: Any) -> None:
        """Complete the write before the transaction commits."""


class ExecuteManySink(RowSink):
    """Portable: one parameterised statement per row (sqlite, mysql; psycopg 3 pipelines it)."""

    def __init__(self, statement: str) -> None:
        self.statement = statement

    def write(self, cursor: Any, batch: list[Sequence[Any]]) -> None:
        cursor.executemany(self.statement, batch)


class ExecuteValuesSink(RowSink):
    """psycopg2: one multi-row statement per batch (its executemany sends one per row).

    A multi-row upsert cannot touch the same key twice, so within a batch the last row per key wins, as
    it would row by row.
    """

    def __init__(self, statement: str, key_at: Sequence[int], newer_at: int | None = None) -> None:
        self.statement = statement
        self.key_at = list(key_at)
        self.newer_at = newer_at

    def write(self, cursor: Any, batch: list[Sequence[Any]]) -> None:
        from psycopg2.extras import execute_values

        if self.key_at:
            kept: dict[tuple[Any, ...], Sequence[Any]] = {}
            for row in batch:
                key = tuple(row[i] for i in self.key_at)
                if (
                    self.newer_at is None
                    or key not in kept
                    or not _older(row[self.newer_at], kept[key][self.newer_at])
                ):
                    kept[key] = row
            batch = list(kept.values())
        execute_values(cursor, self.statement, batch, page_size=len(batch))


def _older(value: Any, than: Any) -> bool:
    """Whether ``value`` is older than ``than`` (a missing value counts as oldest)."""
    if value is None:
        return than is not None
    return than is not None and value < than


class PostgresCopySink(RowSink):
    """psycopg 3: COPY straight into the target batch by batch; a batch whose keys collide takes a stage.

    Insert mode is plain COPY. For an upsert each batch is COPYed into the target under a savepoint, so
    new keys (the usual import) cost one COPY and nothing more: measured on 1M rows into a keyed table,
    2.0 s, against 1.8 s COPY into a stage plus 1.5 s MERGE, or plus 2.9 s ``INSERT ... ON CONFLICT``. A
    batch that hits an existing key, or repeats one, rolls back to its savepoint and goes through a
    temporary stage table: ``INSERT ... SELECT DISTINCT ON (key) ... ON CONFLICT DO UPDATE``, the last row
    per key winning by record number. After the first collision the rest of the file goes straight to the
    stage: a re-import collides on every batch, and sending each batch twice would cost more.
    """

    seq_column = "_b2b_seq"

    def __init__(
        self,
        table: str,
        fields: Sequence[str],
        key: Sequence[str],
        upsert: bool,
        rule: ConflictRule = NO_RULE,
    ) -> None:
        check_identifiers(table, [*fields, *key])
        rule.check(fields)
        self.table, self.fields, self.key, self.upsert, self.rule = (
            table,
            list(fields),
            list(key),
            upsert,
            rule,
        )
        self.stage = "b2b_stage_rows"
        self._staging = False
        self._stage_ready = False
        self._seq = 0

    def begin(self, cursor: Any) -> None:
        self._staging = self._stage_ready = False
        self._seq = 0

    def write(self, cursor: Any, batch: list[Sequence[Any]]) -> None:
        """Rows in file order (numbered here, in arrival order)."""
        first = self._seq + 1
        self._seq += len(batch)
        self.write_batch(cursor, None, [(*row, n) for n, row in enumerate(batch, start=first)])

    def write_batch(
        self, cursor: Any, csv_text: Callable[[bool], bytes] | None, numbered_rows: list[Sequence[Any]]
    ) -> None:
        """One batch: ``csv_text(numbered)`` renders CSV rows (NULL = unquoted empty field) with or without
        the record number as last column; ``numbered_rows`` are row tuples ending with theirs."""
        if not self.upsert:
            self._copy(cursor, self.table, self.fields, csv_text, numbered_rows, numbered=False)
            return
        if not self._staging:
            from psycopg import errors

            cursor.execute("SAVEPOINT b2b_batch")
            try:
                self._copy(cursor, self.table, self.fields, csv_text, numbered_rows, numbered=False)
            except errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT b2b_batch")
                self._staging = True
            else:
                cursor.execute("RELEASE SAVEPOINT b2b_batch")
                return
        self._upsert_through_stage(cursor, csv_text, numbered_rows)

    def _copy(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        csv_text: Callable[[bool], bytes] | None,
        numbered_rows: list[Sequence[Any]],
        numbered: bool,
    ) -> None:
        names = ", ".join(columns)
        if csv_text is not None:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(csv_text(numbered))
        if numbered_rows:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in numbered_rows:
                    copy.write_row(row if numbered else row[:-1])

    def _upsert_through_stage(
        self, cursor: Any, csv_text: Callable[[bool], bytes] | None, numbered_rows: list[Sequence[Any]]
    ) -> None:
        if not self._stage_ready:
            cursor.execute(f"DROP TABLE IF EXISTS {self.stage}")
            cursor.execute(
                f"CREATE TEMP TABLE {self.stage} ON COMMIT DROP AS SELECT {', '.join(self.fields)} "
                f"FROM {self.table} WITH NO DATA"
            )
            cursor.execute(f"ALTER TABLE {self.stage} ADD COLUMN {self.seq_column} BIGINT")
            self._stage_ready = True
        self._copy(
            cursor, self.stage, [*self.fields, self.seq_column], csv_text, numbered_rows, numbered=True
        )
        columns = ", ".join(self.fields)
        keys = ", ".join(self.key)
        # Per key, the row that wins: the newest by the last-writer column, else the last in the file.
        newest = f"{self.rule.last_writer_by} DESC NULLS LAST, " if self.rule.last_writer_by else ""
        cursor.execute(
            f"INSERT INTO {self.table} AS {TARGET_ALIAS} ({columns}) SELECT DISTINCT ON ({keys}) {columns} "
            f"FROM {self.stage} ORDER BY {keys}, {newest}{self.seq_column} DESC "
            f"{self.rule.on_conflict(self.key, self.fields)}"
        )
        cursor.execute(f"TRUNCATE {self.stage}")


def row_sink(
    conn: Any,
    dialect: str,
    table: str,
    fields: Sequence[str],
    key: Sequence[str],
    upsert: bool,
    placeholder: str,
    rule: ConflictRule = NO_RULE,
) -> RowSink:
    """The fastest correct way to write rows on this connection's driver."""
    driver = type(conn).__module__.split(".")[0]
    if dialect == "postgres" and driver == "psycopg":
        return PostgresCopySink(table, fields, key, upsert, rule)
    if dialect == "postgres" and driver == "psycopg2":
        multi_row = insert_statement(dialect, table, fields, key, upsert, placeholder, "%s", rule)
        newer_at = list(fields).index(rule.last_writer_by) if upsert and rule.last_writer_by else None
        return ExecuteValuesSink(multi_row, [list(fields).index(k) for k in key] if upsert else [], newer_at)
    return ExecuteManySink(insert_statement(dialect, table, fields, key, upsert, placeholder, rule=rule))


def prepare_target(
    conn: Any,
    dialect: str,
    placeholder: str,
    table: str,
    fields: Sequence[str],
    key: Sequence[str],
    upsert: bool,
    create_columns: dict[str, str] | None = None,
    rule: ConflictRule = NO_RULE,
) -> RowSink:
    """Check names, create the table if asked (its own commit), and return the sink to write rows with."""
    sink = row_sink(conn, dialect, table, fields, key, upsert, placeholder, rule)
    if create_columns:
        from b2b_integrations.state.ddl import create_tables

        create_tables(conn, [create_table_statement(table, create_columns, key)], table)
    return sink


def chunked(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    """Consecutive lists of at most ``size`` rows, pulling lazily from ``rows``."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_rows(
    conn: Any,
    sink: RowSink,
    rows: Iterable[Sequence[Any]],
    chunk_size: int,
    progress: Callable[[int], None] | None = None,
    before_commit: Callable[[Any], None] | None = None,
) -> int:
    """Write every row through ``sink`` in one transaction; roll back everything on any error.

    ``rows`` may be a lazy iterator (a file being parsed): it is consumed chunk by chunk, so memory stays
    bounded. ``progress(rows_done)`` is called after each chunk. ``before_commit(cursor)`` runs inside the
    same transaction, for state that must move with the rows (a ledger entry, a cursor).
    """
    return write_in_transaction(conn, sink, row_writes(sink, rows, chunk_size), progress, before_commit)


def row_writes(
    sink: RowSink, rows: Iterable[Sequence[Any]], chunk_size: int
) -> Iterator[Callable[[Any], int]]:
    """``rows`` as lazy chunk writes for :func:`write_in_transaction`."""
    for chunk in chunked(rows, chunk_size):
        yield partial(_write_chunk, sink, chunk)


def _write_chunk(sink: RowSink, chunk: list[Sequence[Any]], cursor: Any) -> int:
    sink.write(cursor, chunk)
    return len(chunk)


def write_in_transaction(
    conn: Any,
    sink: RowSink,
    writes: Iterable[Callable[[Any], int]],
    progress: Callable[[int], None] | None = None,
    before_commit: Callable[[Any], None] | None = None,
) -> int:
    """Run each ``write(cursor) -> rows written`` between ``sink.begin`` and ``sink.finish``, then
    ``before_commit``, and commit once; roll back everything on any error (including the caller's)."""
    done = 0
    try:
        with closing(conn.cursor()) as cur:
            sink.begin(cur)
            for write in writes:
                done += write(cur)
                if progress is not None:
                    progress(done)
            sink.finish(cur)
            if before_commit is not None:
                before_commit(cur)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return done
