"""Writing documents with line items: header rows upserted, each document's lines replaced, one transaction.

A batch of :class:`~b2b_integrations.formats.documents.DocumentRows` goes through the header table's own
sink (the same upsert as any import), then every line row of those documents is deleted by the header key
and the new lines are inserted. Replacing rather than upserting lines is what makes the tables equal the
latest document: a line that disappeared from it is gone, and a line whose position moved cannot leave its
old row behind. It runs inside the caller's transaction (``sinks.sql.write_in_transaction``), so a reader
never sees a document without its lines or with half of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from b2b_integrations.formats.documents import DocumentRows, DocumentSpec, LineGroup
from b2b_integrations.sinks.sql import RowSink, check_identifiers, prepare_target

# Keys per DELETE: one statement per document cost a round trip each (a third of a re-import's time); one
# per batch must stay under every driver's parameter limit (SQLite's was 999 before 3.32).
DELETE_KEYS_PER_STATEMENT = 200


@dataclass(frozen=True)
class _LineTable:
    group: LineGroup
    sink: RowSink
    header_key: tuple[str, ...]
    placeholder: str
    dialect: str

    def delete(self, cursor: Any, keys: list[tuple[Any, ...]]) -> None:
        """Delete the rows of these header keys: ``WHERE (a, b) IN ((..), ..)``, a row-value list that
        PostgreSQL, MySQL and SQLite (3.15+) all take. PostgreSQL gets ``IN (VALUES ..)``: a plain list
        becomes an OR of every key tested on each row, and psycopg's prepared statement keeps the plan made
        while the table was empty (a sequential scan), which made a 100,000-line import quadratic."""
        one = f"({', '.join([self.placeholder] * len(self.header_key))})"
        columns = f"({', '.join(self.header_key)})"
        listed = "VALUES " if self.dialect == "postgres" else ""
        for start in range(0, len(keys), DELETE_KEYS_PER_STATEMENT):
            chunk = keys[start : start + DELETE_KEYS_PER_STATEMENT]
            values = ", ".join([one] * len(chunk))
            cursor.execute(
                f"DELETE FROM {self.group.table} WHERE {columns} IN ({listed}{values})",
                [value for key in chunk for value in key],
            )


class DocumentSink(RowSink):
    """Writes batches of documents: headers through ``header``, lines replaced per header key."""

    def __init__(self, header: RowSink, lines: Sequence[_LineTable]) -> None:
        self.header = header
        self.lines = list(lines)

    def begin(self, cursor: Any) -> None:
        self.header.begin(cursor)
        for table in self.lines:
            table.sink.begin(cursor)

    def write(self, cursor: Any, batch: list[Any]) -> None:
        # The same document twice in a batch: the later one wins, as for rows with one key.
        documents: dict[tuple[Any, ...], DocumentRows] = {doc.key: doc for doc in batch}
        self.header.write(cursor, [doc.header for doc in documents.values()])
        keys = list(documents)
        for table in reversed(self.lines):  # children first, for foreign keys pointing at parents
            table.delete(cursor, keys)
        for table in self.lines:
            rows = [row for doc in documents.values() for row in doc.lines[table.group.table]]
            if rows:
                table.sink.write(cursor, rows)

    def finish(self, cursor: Any) -> None:
        self.header.finish(cursor)
        for table in self.lines:
            table.sink.finish(cursor)


def document_sink(
    conn: Any, dialect: str, placeholder: str, header: RowSink, spec: DocumentSpec, create_tables: bool
) -> DocumentSink:
    """The sink for ``spec``'s documents on this connection (line tables created first when asked)."""
    lines = []
    for group in spec.all_groups():
        check_identifiers(group.table, [*group.table_columns, *spec.header_key])
        sink = prepare_target(
            conn,
            dialect,
            placeholder,
            group.table,
            group.table_columns,
            group.key,
            upsert=False,
            create_columns=dict(group.columns) if create_tables and group.columns else None,
        )
        lines.append(_LineTable(group, sink, spec.header_key, placeholder, dialect))
    return DocumentSink(header, lines)
