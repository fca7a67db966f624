"""Load records into a SQL table through an Airflow DB-API connection (insert, or upsert by key)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.base import MESSAGE_ID, RECEIVED_AT, StepOperator
from b2b_integrations.sinks.documents import document_sink
from b2b_integrations.sinks.sql import conflict_rule, prepare_target, write_rows

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from b2b_integrations.formats.documents import DocumentRows, DocumentSpec


def rows_for_insert(frame: pd.DataFrame, fields: Sequence[str]) -> list[tuple[Any, ...]]:
    """Native Python values (DB drivers reject numpy scalars); NaN becomes NULL."""
    records = frame[list(fields)].to_dict(orient="records")
    return [
        tuple(None if isinstance(v, float) and math.isnan(v) else v for v in (rec[f] for f in fields))
        for rec in records
    ]


class SqlLoadOperator(StepOperator):
    """
    Write the upstream step's records into ``table``. All rows go in one transaction, so a failed load
    leaves nothing half-written; ``upsert`` updates rows with the same key, so a retry or a re-run of the
    same period never duplicates rows. ``insert`` appends: use it only where duplicates are acceptable.

    Each record is checked before the write: the key fields present and not empty, and each declared
    column's value convertible to its SQL type (length, integer range). A record that fails is set aside
    with its reasons and the others load: records of an inbox message are quarantined with the message
    (``StepOperator.quarantine``), other records go to ``b2b_quarantine`` in the same transaction as the
    rows. Our ``_b2b_*`` columns (message id, receive time) are never loaded.

    :param conn_id: Airflow connection of the target database (postgres, sqlite or mysql for upsert).
    :param table: Target table, optionally ``schema.table``. (templated)
    :param mode: ``upsert`` (default) or ``insert``.
    :param key: Columns identifying a row; required for upsert.
    :param columns: Column -> SQL type. When given, only these columns are loaded (each must be present).
    :param create_table: Create the table from ``columns`` if it does not exist.
    :param chunk_size: Rows per ``executemany`` batch (progress is logged per batch).
    :param conflict: Two-way sync rules for upserts: ``last_writer_by`` (update a row only when this
        column is newer) and ``app_owned`` (columns never overwritten). See ``sinks.sql.ConflictRule``.
    :param document: Each record is a document with line items (``formats.documents``), e.g. a webhook's
        order: its top-level fields are the row of ``table``, each line group goes to its own table, the
        document's old lines replaced in the same transaction; a document with a bad line is set aside whole.
    """

    template_fields: Sequence[str] = ("table",)
    ui_color = "#e8fbe9"

    def __init__(
        self,
        *,
        conn_id: str,
        table: str,
        mode: str = "upsert",
        key: Sequence[str] = (),
        columns: dict[str, str] | None = None,
        create_table: bool = False,
        chunk_size: int = 1000,
        conflict: dict[str, Any] | None = None,
        document: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.mode = mode
        self.key = list(key)
        self.columns = columns
        self.create_table = create_table
        self.chunk_size = chunk_size
        self.conflict = conflict
        self.document = document

    def _check_arguments(self) -> None:
        if self.mode not in ("insert", "upsert"):
            raise FatalStepError(f"mode must be 'insert' or 'upsert', got {self.mode!r}")
        if self.mode == "upsert" and not self.key:
            raise FatalStepError("mode 'upsert' needs key columns")
        if self.create_table and not self.columns:
            raise FatalStepError("create_table needs columns")
        if not self.conn_id:
            raise FatalStepError(
                "no database connection id: the customer config must fill the connection slot"
            )

    def _fields(self, frame: pd.DataFrame) -> list[str]:
        fields = list(self.columns) if self.columns else [str(c) for c in frame.columns if not _ours(str(c))]
        missing = sorted({f for f in [*fields, *self.key] if f not in frame.columns})
        if missing and MESSAGE_ID not in frame.columns:
            raise FatalStepError(f"records lack field(s) {missing} needed by table {self.table}")
        for name in missing:
            # Inbox records: no message carried the field; each record is quarantined below for it.
            frame[name] = None
        return fields

    def _checked(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, int, list[str], Any]]]:
        """The records that pass the checks; inbox records that fail are quarantined with their message,
        the others returned as (source, record number, reasons, record) for ``b2b_quarantine``."""
        from b2b_integrations.formats.validation import sql_record_checker

        check = sql_record_checker(self.columns, self.key)
        keep: list[bool] = []
        rejected: list[tuple[str, int, list[str], Any]] = []
        for number, record in enumerate(frame.to_dict(orient="records"), start=1):
            problems = check(record)
            keep.append(not problems)
            if not problems:
                continue
            message_id = record.get(MESSAGE_ID)
            if isinstance(message_id, str):
                for field, reason in problems:
                    self.quarantine(
                        message_id,
                        f"table {self.table}: {reason}",
                        received_at=record.get(RECEIVED_AT),
                        field=field,
                        record=number,
                    )
            else:
                data = {
                    k: None if isinstance(v, float) and math.isnan(v) else v
                    for k, v in record.items()
                    if not _ours(str(k))
                }
                rejected.append((f"table {self.table}", number, [r for _, r in problems], data))
                self.log.warning(
                    "%s: record %d set aside: %s", self.where, number, "; ".join(r for _, r in problems)
                )
        return (frame if all(keep) else frame[keep]), rejected

    def _documents(self) -> DocumentSpec | None:
        if self.document is None:
            return None
        from b2b_integrations.formats.documents import document_spec

        try:
            return document_spec(self.document, self.key, self.columns, self.create_table)
        except ValueError as e:
            raise FatalStepError(f"invalid document options: {e}") from e

    def _document_rows(
        self, frame: pd.DataFrame, spec: DocumentSpec
    ) -> tuple[list[str], list[DocumentRows], list[tuple[str, int, list[str], Any]], list[bool]]:
        """(header columns, accepted documents, refused ones for ``b2b_quarantine``, which records were
        accepted); a refused document of an inbox message is quarantined with its message, every reason
        naming its line and field."""
        from b2b_integrations.formats.validation import sql_record_checker

        top = {group.path[0] for group in spec.groups}
        if self.columns:
            fields = list(self.columns)
        else:
            present = [str(c) for c in frame.columns if not _ours(str(c)) and str(c) not in top]
            fields = [*present, *(c for c in spec.header_paths if c not in present)]
        check = sql_record_checker(self.columns, self.key)
        accepted: list[DocumentRows] = []
        rejected: list[tuple[str, int, list[str], Any]] = []
        keep: list[bool] = []
        for number, record in enumerate(frame.to_dict(orient="records"), start=1):
            record = {k: _native(v) for k, v in record.items()}
            header_fields = spec.header_fields(record)
            reasons = [reason for _, reason in check(header_fields)]
            reasons += [
                f"field {f!r}: expected one value, got {type(v).__name__}"
                for f in fields
                if isinstance(v := header_fields.get(f), dict | list)
                and not (self.columns and f in self.columns)
            ]
            rows, line_reasons = spec.split({f: header_fields.get(f) for f in fields}, record)
            reasons += line_reasons
            keep.append(rows is not None and not reasons)
            if rows is not None and not reasons:
                accepted.append(rows)
                continue
            self._set_aside(record, number, reasons, rejected)
        return fields, accepted, rejected, keep

    def _set_aside(
        self,
        record: dict[str, Any],
        number: int,
        reasons: list[str],
        rejected: list[tuple[str, int, list[str], Any]],
    ) -> None:
        message_id = record.get(MESSAGE_ID)
        if isinstance(message_id, str):
            self.quarantine(
                message_id,
                f"table {self.table}: {'; '.join(reasons)}",
                received_at=record.get(RECEIVED_AT),
                record=number,
            )
            return
        data = {k: v for k, v in record.items() if not _ours(str(k))}
        rejected.append((f"table {self.table}", number, reasons, data))
        self.log.warning("%s: document %d set aside: %s", self.where, number, "; ".join(reasons))

    def run_step(self, context: Context) -> dict[str, Any]:
        self._check_arguments()
        documents = self._documents()
        frame = self.load_input(context)
        if frame is None:
            raise FatalStepError("a load step needs an upstream step that produces records")
        if frame.empty:
            self.log.info("No rows to load into %s", self.table)
            return {**self.stage_output(context, frame), "table": self.table, "rows_loaded": 0}
        rows: list[Any]
        if documents is not None:
            fields, rows, rejected, keep = self._document_rows(frame, documents)
            frame = frame if all(keep) else frame[keep]
        else:
            fields = self._fields(frame)
            frame, rejected = self._checked(frame)
            if self.mode == "upsert":
                duplicated = int(frame.duplicated(subset=self.key, keep="last").sum())
                if duplicated:
                    self.log.info("%d rows share a key with a later row; the later row wins", duplicated)
                    frame = frame.drop_duplicates(subset=self.key, keep="last")
            rows = rows_for_insert(frame, fields)
        hook, dialect = get_db_hook(self.conn_id)
        self.log.info("Loading %d rows into %s (%s) via %s", len(rows), self.table, self.mode, self.conn_id)
        with closing(hook.get_conn()) as conn:
            sink = prepare_target(
                conn,
                dialect,
                hook.placeholder,
                self.table,
                fields,
                self.key,
                self.mode == "upsert",
                self.columns if self.create_table else None,
                conflict_rule(self.conflict),
            )
            if documents is not None:
                sink = document_sink(conn, dialect, hook.placeholder, sink, documents, self.create_table)
            before_commit = None
            if rejected:
                from b2b_integrations.state import cursors

                cursors.ensure_tables(conn)
                key = cursors.StepKey(self.customer_id, self.integration, self.flow, self.task_id)

                def before_commit(cur: Any) -> None:
                    cursors.quarantine_records(cur, hook.placeholder, key, context["run_id"], rejected)

            write_rows(
                conn,
                sink,
                rows,
                self.chunk_size,
                progress=lambda done: self.log.info(
                    "Loaded %d of %d rows into %s", done, len(rows), self.table
                ),
                before_commit=before_commit,
            )
        # The loaded rows are this step's output too, so a flow can continue (or trigger another) after a load.
        return {
            **self.stage_output(context, frame),
            "table": self.table,
            "rows_loaded": len(rows),
            "rows_quarantined": len(rejected) + len({q["message_id"] for q in self.quarantined}),
        }


def _native(value: Any) -> Any:
    """pandas' missing value (NaN in an object column) as None; other values as they are."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _ours(column: str) -> bool:
    """Our own bookkeeping columns (``_b2b_message_id``, ``_b2b_received_at``), never loaded."""
    return column.startswith("_b2b_")
