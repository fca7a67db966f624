"""Scheduled file export: query the period's rows (or take the upstream step's records), render a report."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from b2b_integrations.callables import import_callable
from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.reports.config import default_title, format_file_name, report_spec_from_config
from b2b_integrations.reports.period import period_label, plain_utc, report_period
from b2b_integrations.reports.render import render_report
from b2b_integrations.reports.spec import CONTENT_TYPES, ReportMeta, ReportSpec
from b2b_integrations.staging import data_dir, safe_path_part

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

DEFAULT_FILE_NAME = "{customer}_{report}_{ds}.{format}"
INPUT_CHUNK_ROWS = 50_000
_PROGRESS_EVERY_SECONDS = 5.0


def report_path(customer_id: str, integration: str, report: str, name: str) -> Path:
    """``data_dir()/reports/<customer>/<integration>/<report>/<name>``: fixed per period, so a re-run of the
    same period replaces its file."""
    parts = [safe_path_part(p) for p in (customer_id, integration, report)]
    return data_dir().joinpath("reports", *parts, safe_path_part(name))


class ReportExportOperator(StepOperator):
    """
    Render one report file (PDF, CSV, XML or xlsx) for the run's period and return its description, which
    the ``deliver`` step sends on.

    The rows come from ``source.sql`` (run on ``db_conn_id`` with named bind parameters, streamed in
    ``source.chunk_rows`` chunks), or, without a source, from the upstream step's staged records. An
    optional ``transform`` is applied to each chunk. The file goes to
    ``data_dir()/reports/<customer>/<integration>/<report>/<file_name>`` atomically; the same period
    gives the same name, so a re-run replaces the file rather than adding one.

    Returns ``{file, name, format, content_type, rows, bytes, sha256, report, period, period_start,
    period_end, empty, summary}``.

    :param report: Report identifier (file names, delivery ledger).
    :param report_format: ``pdf``, ``csv``, ``xml`` or ``xlsx``.
    :param file_name: Name template; placeholders customer, integration, flow, report, ds, ds_nodash,
        period_start, period_end (dates, exclusive end), format.
    :param source: ``{sql, parameters, chunk_rows}``; None reads the upstream step's records. (templated)
    :param db_conn_id: Airflow connection of the database ``source.sql`` runs on.
    :param transform: Dotted path of a callable applied to each chunk (allow-listed packages only).
    :param transform_options: Keyword arguments for the transform.
    :param empty: ``send`` an empty report when there are no rows, or ``skip`` the task.
    :param empty_note: Text shown in an empty PDF. (templated)
    :param period: ``interval`` (the run's data interval) or day, week, month, quarter, year (the last
        full one ending at the run's interval end, in ``period_timezone``).
    :param period_timezone: IANA zone of calendar periods.
    :param customer_name: Shown in the PDF header (defaults to the customer id).
    :param render: Rendering options, see ``reports.config``. (templated)
    """

    template_fields: Sequence[str] = ("source", "render", "empty_note")
    ui_color = "#fbeee6"

    def __init__(
        self,
        *,
        report: str,
        report_format: str,
        file_name: str = DEFAULT_FILE_NAME,
        source: dict[str, Any] | None = None,
        db_conn_id: str | None = None,
        transform: str | None = None,
        transform_options: dict[str, Any] | None = None,
        empty: str = "send",
        empty_note: str = "",
        period: str = "interval",
        period_timezone: str = "UTC",
        customer_name: str | None = None,
        render: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.report = report
        self.report_format = report_format
        self.file_name = file_name
        self.source = source
        self.db_conn_id = db_conn_id
        self.transform = transform
        self.transform_options = transform_options or {}
        self.empty = empty
        self.empty_note = empty_note
        self.period = period
        self.period_timezone = period_timezone
        self.customer_name = customer_name
        self.render = render or {}

    def run_step(self, context: Context) -> dict[str, Any]:
        if self.empty not in ("send", "skip"):
            raise FatalStepError(
                f"report {self.report!r}: empty must be 'send' or 'skip', got {self.empty!r}"
            )
        spec = self._spec()
        start, end = self._period(context)
        ds = str(context.get("ds") or start.date().isoformat())
        name = self._name(ds, start, end)
        path = report_path(self.customer_id, self.integration, self.report, name)
        meta = ReportMeta(
            customer_name=self.customer_name or self.customer_id,
            period_start=start,
            period_end=end,
            empty_note=self.empty_note,
            logo_path=_logo_path(spec.logo) if spec.logo else None,
        )
        self.log.info(
            "Rendering report %s (%s) for %s, period %s, to %s",
            self.report, spec.format, self.customer_id, period_label(start, end), path,
        )  # fmt: skip
        with closing(self._chunks(context, start, end, ds)) as chunks:
            has_rows, rows = _peek(self._transformed(chunks))
            if not has_rows and self.empty == "skip":
                self._skip(path, start, end)
            progress = _ProgressLog(self.log)
            result = render_report(spec, rows, path, meta, progress=progress)
        self.log.info(
            "Report %s: %d rows in %d chunk(s), %d bytes, sha256 %s; summary %s",
            name, result.rows, result.chunks, result.bytes, result.sha256, result.summary,
        )  # fmt: skip
        return {
            "file": result.path,
            "name": name,
            "format": spec.format,
            "content_type": CONTENT_TYPES[spec.format],
            "rows": result.rows,
            "bytes": result.bytes,
            "sha256": result.sha256,
            "report": self.report,
            "period": ds,
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "empty": result.rows == 0,
            "summary": result.summary,
        }

    def _spec(self) -> ReportSpec:
        try:
            return report_spec_from_config(
                self.report_format, self.render, default_title=default_title(self.report)
            )
        except ValueError as e:
            raise FatalStepError(f"report {self.report!r}: invalid render options: {e}") from None

    def _period(self, context: Context) -> tuple[datetime, datetime]:
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if self.period != "interval" and end is None:
            # Manual runs may have no logical date: the period is the one before the run itself.
            dag_run = context.get("dag_run")
            end = context.get("logical_date") or getattr(dag_run, "run_after", None)
        try:
            return report_period(
                self.period, start, end, self.period_timezone, allow_point=not self._uses_period()
            )
        except ValueError as e:
            raise FatalStepError(f"report {self.report!r}: {e}") from None

    def _uses_period(self) -> bool:
        """Whether the query filters on the period (a snapshot report may run on a zero-length interval)."""
        from b2b_integrations.reports.query import bind_names

        sql = (self.source or {}).get("sql")
        return bool(sql) and bool({"period_start", "period_end"} & set(bind_names(sql)))

    def _name(self, ds: str, start: datetime, end: datetime) -> str:
        values = {
            "customer": self.customer_id,
            "integration": self.integration,
            "flow": self.flow,
            "report": self.report,
            "ds": ds,
            "ds_nodash": ds.replace("-", ""),
            "period_start": start.date(),
            "period_end": end.date(),
            "format": self.report_format,
        }
        try:
            return format_file_name(self.file_name, values)
        except ValueError as e:
            raise FatalStepError(f"report {self.report!r}: {e}") from None

    def _chunks(self, context: Context, start: datetime, end: datetime, ds: str) -> Iterator[pd.DataFrame]:
        """The report's rows in chunks: the query's, or the upstream step's records."""
        if self.source:
            yield from self._query_chunks(context, start, end, ds)
            return
        frame = self.load_input(context)
        if frame is None:
            raise FatalStepError(
                f"report {self.report!r} has no source.sql and no upstream step: give it a source or put it "
                "after a step that produces records"
            )
        for offset in range(0, max(len(frame), 1), INPUT_CHUNK_ROWS):
            yield frame.iloc[offset : offset + INPUT_CHUNK_ROWS]

    def _query_chunks(
        self, context: Context, start: datetime, end: datetime, ds: str
    ) -> Iterator[pd.DataFrame]:
        from sqlalchemy.exc import DBAPIError, OperationalError

        from b2b_integrations.clients.sql import get_db_hook
        from b2b_integrations.reports.query import sql_chunks

        source = self.source or {}
        if not source.get("sql"):
            raise FatalStepError(f"report {self.report!r}: source has no sql")
        logical_date = context.get("logical_date")
        parameters = {
            **(source.get("parameters") or {}),
            "period_start": start,
            "period_end": end,
            "ds": ds,
            "logical_date": plain_utc(logical_date) if logical_date is not None else None,
            "customer_id": self.customer_id,
            "integration": self.integration,
            "flow": self.flow,
        }
        hook, _ = get_db_hook(self.db_conn_id)
        engine = hook.get_sqlalchemy_engine()
        try:
            yield from sql_chunks(engine, source["sql"], parameters, int(source.get("chunk_rows", 50_000)))
        except OperationalError:
            raise  # connection trouble: Airflow's retries apply
        except DBAPIError as e:
            reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else type(e).__name__
            raise FatalStepError(
                f"report {self.report!r}: the query on connection {self.db_conn_id!r} failed: "
                f"{type(e.orig).__name__}: {reason}"
            ) from None
        finally:
            engine.dispose()

    def _transformed(self, chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        if not self.transform:
            yield from chunks
            return
        from b2b_integrations.config.loader import transform_prefixes_from_env

        allowed = transform_prefixes_from_env()
        if not self.transform.replace(":", ".").startswith(allowed):
            raise FatalStepError(
                f"report {self.report!r}: transform {self.transform!r} is outside the allowed packages "
                f"{list(allowed)} (set B2B_TRANSFORM_PREFIXES to allow another package)"
            )
        func = import_callable(self.transform)
        for chunk in chunks:
            yield _as_frame(func(chunk, **self.transform_options), self.transform)

    def _skip(self, path: Path, start: datetime, end: datetime) -> None:
        period = period_label(start, end)
        if path.exists():
            # A file from an earlier run of this period no longer matches the data: remove it.
            path.unlink()
            self.log.info("Removed %s, rendered by an earlier run of this period", path)
        self.log.info(
            "No rows for customer %s, report %s, period %s; empty: skip",
            self.customer_id,
            self.report,
            period,
        )
        raise AirflowSkipException(
            f"customer {self.customer_id}, report {self.report}: no rows for period {period} (empty: skip)"
        )


class _ProgressLog:
    """Logs rows rendered so far, at most every few seconds."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.last = time.monotonic()

    def __call__(self, rows: int, chunks: int) -> None:
        now = time.monotonic()
        if now - self.last >= _PROGRESS_EVERY_SECONDS or chunks == 1:
            self.log.info("Rendering: %d rows read in %d chunk(s)", rows, chunks)
            self.last = now


def _peek(chunks: Iterator[pd.DataFrame]) -> tuple[bool, Iterator[pd.DataFrame]]:
    """Whether any chunk has rows, without losing the chunks read to find out (empty ones keep the columns)."""
    seen = []
    for chunk in chunks:
        seen.append(chunk)
        if len(chunk):
            return True, chain(seen, chunks)
    return False, iter(seen)


def _as_frame(result: Any, transform: str) -> pd.DataFrame:
    import pandas as pd

    if result is None:
        return pd.DataFrame()
    if isinstance(result, pd.DataFrame):
        return result
    if isinstance(result, list) and all(isinstance(row, dict) for row in result):
        return pd.DataFrame.from_records(result)
    raise FatalStepError(
        f"transform {transform!r} returned {type(result).__name__}; expected a DataFrame, a list of dicts or None"
    )


def _logo_path(logo: str) -> str:
    """An absolute logo path as is; a relative one inside the include folder (beside the templates)."""
    path = Path(logo)
    if not path.is_absolute():
        include = os.environ.get("B2B_INCLUDE_DIR")
        if include is None:
            from airflow.configuration import conf

            include = str(Path(conf.get("core", "dags_folder")).resolve().parent / "include")
        path = Path(include) / path
    if not path.is_file():
        raise FatalStepError(f"render.logo: image {str(path)!r} does not exist on this worker")
    return str(path)
