"""CSV: pandas' C writer chunk by chunk into one open file, in the configured dialect."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from b2b_integrations.reports.errors import ReportDataError
from b2b_integrations.reports.spec import ColumnSpec, CsvOptions, ReportSpec
from b2b_integrations.reports.stream import RowStream
from b2b_integrations.reports.values import text_values

if TYPE_CHECKING:
    import pandas as pd

QUOTING = {
    "minimal": csv.QUOTE_MINIMAL,
    "all": csv.QUOTE_ALL,
    "nonnumeric": csv.QUOTE_NONNUMERIC,
    "none": csv.QUOTE_NONE,
}


def write_csv(stream: RowStream, path: Path, spec: ReportSpec) -> None:
    """Write every chunk of ``stream`` to ``path``; the header comes from the first chunk (or the declared
    columns when there is none), so an empty result is a header-only file."""
    options = spec.csv
    header_done = not options.header
    with path.open("w", encoding=options.encoding, newline="") as out:
        for frame, kinds in stream:
            cells, date_format = _cells(frame, kinds, spec)
            try:
                cells.to_csv(
                    out,
                    header=stream.labels() if not header_done else False,
                    index=False,
                    sep=options.delimiter,
                    quotechar=options.quotechar,
                    quoting=QUOTING[options.quoting],
                    escapechar=options.escapechar,
                    lineterminator=options.lineterminator,
                    float_format=f"%.{options.decimals}f" if options.decimals is not None else None,
                    decimal=options.decimal,
                    date_format=date_format,
                    na_rep="",
                )
            except UnicodeEncodeError as e:
                raise _encoding_error(e, options, stream.rows - len(frame) + 1) from None
            header_done = True
        if not header_done and stream.columns:
            _writer(out, options).writerow(stream.labels())


def _cells(frame: pd.DataFrame, kinds: dict[str, str], spec: ReportSpec) -> tuple[pd.DataFrame, str | None]:
    """The chunk as pandas should write it, and the ``date_format`` to pass along.

    Columns pandas would not write the configured way become text; the rest stay typed (its C writer).
    When every date column takes the same strftime format, pandas applies it itself (the common case,
    as fast as a plain ``to_csv``); otherwise each date column is formatted here.
    """
    options = spec.csv
    formats = {
        name: _date_format(frame[name], kind, spec.column(name), options)
        for name, kind in kinds.items()
        if kind in ("date", "datetime")
    }
    shared = set(formats.values())
    native = next(iter(shared)) if len(shared) == 1 and None not in shared else None
    out = frame
    for name, kind in kinds.items():
        column = spec.column(name)
        decimals = column.decimals if column else None
        as_text = kind == "boolean" or (kind == "number" and decimals is not None)
        if as_text or (name in formats and native is None):
            if out is frame:
                out = frame.copy(deep=False)
            explicit = column.date_format if column else None
            out[name] = text_values(
                frame[name],
                kind,
                decimals=decimals,
                date_format=explicit or options.date_format,
                datetime_format=explicit or options.datetime_format,
                decimal_mark=options.decimal,
            ).where(frame[name].notna(), None)
    return out, native


def _date_format(series: pd.Series, kind: str, column: ColumnSpec | None, options: CsvOptions) -> str | None:
    """The strftime format pandas can apply to this column as it is; None when it must be converted first
    (a timezone other than UTC written in the default ISO form)."""
    explicit = column.date_format if column else None
    if kind == "date":
        return explicit or options.date_format
    if explicit or options.datetime_format:
        return explicit or options.datetime_format
    tz = series.dt.tz
    if tz is None:
        return "%Y-%m-%dT%H:%M:%S"
    return "%Y-%m-%dT%H:%M:%SZ" if str(tz) == "UTC" else None


def _writer(out: Any, options: CsvOptions) -> Any:
    return csv.writer(
        out,
        delimiter=options.delimiter,
        quotechar=options.quotechar,
        quoting=QUOTING[options.quoting],
        escapechar=options.escapechar,
        lineterminator=options.lineterminator,
    )


def _encoding_error(e: UnicodeEncodeError, options: CsvOptions, first_row: int) -> ReportDataError:
    bad = e.object[e.start : e.end] if isinstance(e.object, str) else "?"
    return ReportDataError(
        f"rows from {first_row}: {bad!r} cannot be written in encoding {options.encoding!r} "
        "(render.csv.encoding); use utf-8 or utf-8-sig"
    )
