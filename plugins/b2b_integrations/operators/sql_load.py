"""Load records into a SQL table through an Airflow DB-API connection (insert, or upsert by key)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.config.sql_target import SqlTarget
from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.base import MESSAGE_ID, RECEIVED_AT, StepOperator
from b2b_integrations.sinks.sql import write_rows
from b2b_integrations.sinks.target import open_target, sql_target, target_documents, target_options

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
    Write the upstream step's records into the target's table. All rows go in one transaction, so a failed
    load leaves nothing half-written; ``upsert`` updates rows with the same key, so a retry or a re-run of
    the same period never duplicates rows. ``insert`` appends: use it only where duplicates are acceptable.

    Each record is checked before the write: the key fields present and not empty, and each declared
    column's value convertible to its SQL type (length, integer range). A record that fails is set aside
    with its reasons and the others load: records of an inbox message are quarantined with the message
    (``StepOperator.quarantine``), other records go to ``b2b_quarantine`` in the same transaction as the
    rows. Our ``_b2b_*`` columns (message id, receive time) are never loaded.

    :param conn_id: Airflow connection of the target database (postgres, sqlite or mysql for upsert).
    :param target: The table and how to write it: a :class:`~b2b_integrations.config.sql_target.SqlTarget`
        or its options as a dict. When its ``columns`` are given only these are loaded (each must be
        present). (templated)
    """

    template_fields: Sequence[str] = ("target",)
    ui_color = "#e8fbe9"

    def __init__(
        self,
        *,
        conn_id: str,
        target: SqlTarget | Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.target = target_options(target)

    def _checked_target(self) -> SqlTarget:
        if not self.conn_id:
            raise FatalStepError(
                "no database connection id: the customer config must fill the connection slot"
            )
        try:
            return sql_target(self.target)
        except ValueError as e:
            raise FatalStepError(f"invalid load target: {e}") from e

    def _fields(self, frame: pd.DataFrame, target: SqlTarget) -> list[str]:
        columns = target.columns
        fields = list(columns) if columns else [str(c) for c in frame.columns if not _ours(str(c))]
        missing = sorted({f for f in [*fields, *target.key] if f not in frame.columns})
        if missing and MESSAGE_ID not in frame.columns:
            raise FatalStepError(f"records lack field(s) {missing} needed by table {target.table}")
        for name in missing:
            # Inbox records: no message carried the field; each record is quarantined below for it.
            frame[name] = None
        return fields

    def _checked(
        self, frame: pd.DataFrame, target: SqlTarget
    ) -> tuple[pd.DataFrame, list[tuple[str, int, list[str], Any]]]:
        """The records that pass the checks; inbox records that fail are quarantined with their message,
        the others returned as (source, record number, reasons, record) for ``b2b_quarantine``."""
        from b2b_integrations.formats.validation import sql_record_checker

        check = sql_record_checker(target.columns, target.key)
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
                        f"table {target.table}: {reason}",
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
                rejected.append((f"table {target.table}", number, [r for _, r in problems], data))
                self.log.warning(
                    "%s: record %d set aside: %s", self.where, number, "; ".join(r for _, r in problems)
                )
        return (frame if all(keep) else frame[keep]), rejected

    def _document_rows(
        self, frame: pd.DataFrame, spec: DocumentSpec, target: SqlTarget
    ) -> tuple[list[str], list[DocumentRows], list[tuple[str, int, list[str], Any]], list[bool]]:
        """(header columns, accepted documents, refused ones for ``b2b_quarantine``, which records were
        accepted); a refused document of an inbox message is quarantined with its message, every reason
        naming its line and field."""
        from b2b_integrations.formats.validation import sql_record_checker

        top = {group.path[0] for group in spec.groups}
        columns = target.columns
        if columns:
            fields = list(columns)
        else:
            present = [str(c) for c in frame.columns if not _ours(str(c)) and str(c) not in top]
            fields = [*present, *(c for c in spec.header_paths if c not in present)]
        check = sql_record_checker(columns, target.key)
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
                if isinstance(v := header_fields.get(f), dict | list) and not (columns and f in columns)
            ]
            rows, line_reasons = spec.split({f: header_fields.get(f) for f in fields}, record)
            reasons += line_reasons
            keep.append(rows is not None and not reasons)
            if rows is not None and not reasons:
                accepted.append(rows)
                continue
            self._set_aside(record, number, reasons, rejected, target.table)
        return fields, accepted, rejected, keep

    def _set_aside(
        self,
        record: dict[str, Any],
        number: int,
        reasons: list[str],
        rejected: list[tuple[str, int, list[str], Any]],
        table: str,
    ) -> None:
        message_id = record.get(MESSAGE_ID)
        if isinstance(message_id, str):
            self.quarantine(
                message_id,
                f"table {table}: {'; '.join(reasons)}",
                received_at=record.get(RECEIVED_AT),
                record=number,
            )
            return
        data = {k: v for k, v in record.items() if not _ours(str(k))}
        rejected.append((f"table {table}", number, reasons, data))
        self.log.warning("%s: document %d set aside: %s", self.where, number, "; ".join(reasons))

    def run_step(self, context: Context) -> dict[str, Any]:
        target = self._checked_target()
        try:
            documents = target_documents(target)
        except ValueError as e:
            raise FatalStepError(f"invalid document options: {e}") from e
        frame = self.load_input(context)
        if frame is None:
            raise FatalStepError("a load step needs an upstream step that produces records")
        if frame.empty:
            self.log.info("No rows to load into %s", target.table)
            return {**self.stage_output(context, frame), "table": target.table, "rows_loaded": 0}
        rows: list[Any]
        if documents is not None:
            fields, rows, rejected, keep = self._document_rows(frame, documents, target)
            frame = frame if all(keep) else frame[keep]
        else:
            fields = self._fields(frame, target)
            frame, rejected = self._checked(frame, target)
            if target.mode == "upsert":
                duplicated = int(frame.duplicated(subset=target.key, keep="last").sum())
                if duplicated:
                    self.log.info("%d rows share a key with a later row; the later row wins", duplicated)
                    frame = frame.drop_duplicates(subset=target.key, keep="last")
            rows = rows_for_insert(frame, fields)
        hook, dialect = get_db_hook(self.conn_id)
        self.log.info(
            "Loading %d rows into %s (%s) via %s", len(rows), target.table, target.mode, self.conn_id
        )
        with closing(hook.get_conn()) as conn:
            sink = open_target(conn, dialect, hook.placeholder, target, fields, documents)
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
                target.chunk_size,
                progress=lambda done: self.log.info(
                    "Loaded %d of %d rows into %s", done, len(rows), target.table
                ),
                before_commit=before_commit,
            )
        # The loaded rows are this step's output too, so a flow can continue (or trigger another) after a load.
        return {
            **self.stage_output(context, frame),
            "table": target.table,
            "rows_loaded": len(rows),
            "rows_quarantined": len(rejected) + len({q["message_id"] for q in self.quarantined}),
        }


def _native(value: Any) -> Any:
    """pandas' missing value (NaN in an object column) as None; other values as they are."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _ours(column: str) -> bool:
    """Our own bookkeeping columns (``_b2b_message_id``, ``_b2b_received_at``), never loaded."""
    return column.startswith("_b2b_")
