"""Load records into a SQL table through any Airflow DB-API connection (insert, or upsert by key)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.base import StepOperator

if TYPE_CHECKING:
    import pandas as pd
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Context

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_SQL_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+(\s*,\s*\d+)?\s*\))?$")


def create_table_sql(table: str, columns: dict[str, str], key: Sequence[str]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` from declared columns; names and types were validated."""
    for name, sql_type in columns.items():
        if not _IDENTIFIER.match(name) or not _SQL_TYPE.match(sql_type):
            raise FatalStepError(f"column {name!r} has an unsupported name or SQL type {sql_type!r}")
    parts = [f"{name} {sql_type}" for name, sql_type in columns.items()]
    if key:
        parts.append(f"PRIMARY KEY ({', '.join(key)})")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(parts)})"


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
    leaves nothing half-written; ``upsert`` replaces rows with the same key, so a retry or a re-run of the
    same period never duplicates rows. ``insert`` appends: use it only where duplicates are acceptable.

    :param conn_id: Airflow connection of the target database (any DB-API hook: postgres, sqlite...).
    :param table: Target table, optionally ``schema.table``. (templated)
    :param mode: ``upsert`` (default) or ``insert``.
    :param key: Columns identifying a row; required for upsert.
    :param columns: Column -> SQL type. When given, only these columns are loaded (each must be present).
    :param create_table: Create the table from ``columns`` if it does not exist.
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

    def _check_arguments(self) -> None:
        if self.mode not in ("insert", "upsert"):
            raise FatalStepError(f"mode must be 'insert' or 'upsert', got {self.mode!r}")
        if self.mode == "upsert" and not self.key:
            raise FatalStepError("mode 'upsert' needs key columns")
        if not _TABLE.match(self.table):
            raise FatalStepError(f"invalid table name {self.table!r}")
        if self.create_table and not self.columns:
            raise FatalStepError("create_table needs columns")

    def _hook(self) -> DbApiHook:
        from airflow.providers.common.sql.hooks.sql import DbApiHook
        from airflow.sdk import BaseHook

        if not self.conn_id:
            raise FatalStepError("no database connection id: the customer config must fill the connection slot")
        hook = BaseHook.get_connection(self.conn_id).get_hook()
        if not isinstance(hook, DbApiHook):
            raise FatalStepError(f"connection {self.conn_id!r} is not a SQL database ({type(hook).__name__})")
        return hook

    def _fields(self, frame: pd.DataFrame) -> list[str]:
        fields = list(self.columns) if self.columns else [str(c) for c in frame.columns]
        missing = [f for f in [*fields, *self.key] if f not in frame.columns]
        if missing:
            raise FatalStepError(f"records lack field(s) {sorted(set(missing))} needed by table {self.table}")
        bad = [f for f in fields if not _IDENTIFIER.match(f)]
        if bad:
            raise FatalStepError(f"field name(s) {bad} cannot be SQL column names (letters, digits, '_')")
        return fields

    def run_step(self, context: Context) -> dict[str, Any]:
        self._check_arguments()
        frame = self.load_input(context)
        if frame is None:
            raise FatalStepError("a load step needs an upstream step that produces records")
        if frame.empty:
            self.log.info("No rows to load into %s", self.table)
            return {**self.stage_output(context, frame), "table": self.table, "rows_loaded": 0}
        fields = self._fields(frame)
        if self.mode == "upsert":
            duplicated = int(frame.duplicated(subset=self.key, keep="last").sum())
            if duplicated:
                self.log.info("%d rows share a key with a later row; the later row wins", duplicated)
                frame = frame.drop_duplicates(subset=self.key, keep="last")
        hook = self._hook()
        if self.create_table and self.columns:
            hook.run(create_table_sql(self.table, self.columns, self.key))
        rows = rows_for_insert(frame, fields)
        self.log.info("Loading %d rows into %s (%s) via %s", len(rows), self.table, self.mode, self.conn_id)
        hook.insert_rows(
            self.table,
            rows,
            target_fields=fields,
            commit_every=0,  # one transaction: all rows or none
            replace=self.mode == "upsert",
            replace_index=self.key or None,
        )
        self.log.info("Loaded %d rows into %s", len(rows), self.table)
        # The loaded rows are this step's output too, so a flow can continue (or trigger another) after a load.
        return {**self.stage_output(context, frame), "table": self.table, "rows_loaded": len(rows)}
