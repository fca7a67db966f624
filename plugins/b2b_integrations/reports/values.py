"""Column types and value formatting shared by the writers, vectorised per chunk (no per-cell Python in
the common cases).

A chunk is first *prepared*: the declared columns selected in order, declared types enforced (a value that
does not convert is an error naming its row and column), and undeclared object columns given the type their
values have (dates from a database arrive as ``datetime.date`` objects, numbers as floats or Decimals).
Each column then has a *kind*: string, integer, number, boolean, date, datetime, or empty (all null).
"""

from __future__ import annotations

import datetime as dt
import decimal
import numbers
import re
from typing import TYPE_CHECKING, Any

from b2b_integrations.reports.errors import ReportDataError
from b2b_integrations.reports.spec import ColumnSpec, ReportSpec

if TYPE_CHECKING:
    import pandas as pd

_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})
NUMERIC_KINDS = frozenset({"integer", "number"})


def prepare_chunk(
    frame: pd.DataFrame, spec: ReportSpec, first_row: int
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Select, order and type the chunk's columns; return it with each column's kind.

    ``first_row`` is the 1-based number of the chunk's first row in the whole report (for messages).
    """
    import pandas as pd

    frame = _select(frame, spec.columns)
    prepared: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    for name in frame.columns:
        column = spec.column(name)
        series = frame[name].reset_index(drop=True)
        if column is not None and column.type is not None:
            prepared[name], kinds[name] = _coerce(series, column.type, name, first_row), column.type
        else:
            prepared[name], kinds[name] = _infer(series)
    return pd.DataFrame(prepared, columns=list(frame.columns)), kinds


def _select(frame: pd.DataFrame, columns: tuple[ColumnSpec, ...]) -> pd.DataFrame:
    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ReportDataError(f"the data has column(s) {repeated} more than once; alias them in the query")
    frame = frame.set_axis(names, axis=1)
    if not columns:
        return frame
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        raise ReportDataError(f"render.columns {missing} are not in the data; it has columns {names}")
    return frame[[c.name for c in columns]]


def _infer(series: pd.Series) -> tuple[pd.Series, str]:
    import pandas as pd

    api = pd.api.types
    if api.is_bool_dtype(series.dtype):
        return series, "boolean"
    if api.is_integer_dtype(series.dtype):
        return series, "integer"
    if api.is_float_dtype(series.dtype):
        return series, "number"
    if api.is_datetime64_any_dtype(series.dtype):
        return series, "datetime"
    values = series.dropna()
    if values.empty:
        return series, "empty"
    if not api.is_object_dtype(series.dtype):
        return series, "string"
    return _infer_objects(series, values.iloc[0])


def _infer_objects(series: pd.Series, first: Any) -> tuple[pd.Series, str]:
    """Object columns: convert to the type of the first value when every value allows it, else strings."""
    import pandas as pd

    try:
        if isinstance(first, bool):
            return series.astype("boolean"), "boolean"
        if isinstance(first, numbers.Integral):
            try:
                return series.astype("Int64"), "integer"
            except (TypeError, ValueError):
                return pd.to_numeric(series).astype("float64"), "number"  # ints mixed with floats
        if isinstance(first, numbers.Real | decimal.Decimal):
            return pd.to_numeric(series).astype("float64"), "number"
        if isinstance(first, dt.datetime):
            aware = first.tzinfo is not None
            return pd.to_datetime(series, utc=aware), "datetime"
        if isinstance(first, dt.date):
            return pd.to_datetime(series), "date"
    except (TypeError, ValueError, OverflowError):
        pass  # mixed values: shown as text
    return series, "string"


def _coerce(series: pd.Series, kind: str, name: str, first_row: int) -> pd.Series:
    """Enforce a declared type; the first value that does not convert is reported with its row number."""
    import pandas as pd

    present = series.notna() & (series.astype("string").str.strip() != "")
    if kind == "string":
        return series.astype("string").where(present)
    if kind in NUMERIC_KINDS:
        converted = pd.to_numeric(series.where(present), errors="coerce")
        if kind == "integer":
            integral = converted.isna() | (converted == converted.round())
            converted = converted.where(integral)
    elif kind == "boolean":
        converted = series.where(present).map(_to_bool, na_action="ignore").astype("boolean")
    else:
        converted = pd.to_datetime(series.where(present), errors="coerce", format="ISO8601", utc=True)
        if kind == "date":
            converted = converted.dt.tz_localize(None).dt.normalize()
    bad = present & converted.isna()
    if bad.any():
        position = int(bad.to_numpy().nonzero()[0][0])
        value = series.iloc[position]
        raise ReportDataError(
            f"row {first_row + position}, column {name!r}: {value!r} is not a {kind} "
            f"(render.columns declares type {kind!r})"
        )
    return converted.astype("Int64") if kind == "integer" else converted


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


# --- text, for CSV cells, XML elements and PDF cells ---------------------------------------------------


def text_values(
    series: pd.Series,
    kind: str,
    *,
    decimals: int | None = None,
    date_format: str | None = None,
    datetime_format: str | None = None,
    decimal_mark: str = ".",
) -> pd.Series:
    """The column as display strings ("" for nulls), with an object dtype."""
    import numpy as np
    import pandas as pd

    if kind == "number":
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        fmt = f"%.{decimals}f" if decimals is not None else "%.15g"
        text = np.char.mod(fmt, values).astype(object)
        text[np.isnan(values)] = ""
        out = pd.Series(text, index=series.index, dtype=object)
        return out.str.replace(".", decimal_mark, regex=False) if decimal_mark != "." else out
    if kind == "boolean":
        return series.map({True: "true", False: "false"}, na_action="ignore").fillna("").astype(object)
    if kind in ("date", "datetime"):
        return _dates_text(series, kind, date_format, datetime_format)
    return series.astype("string").fillna("").astype(object)


def _dates_text(
    series: pd.Series, kind: str, date_format: str | None, datetime_format: str | None
) -> pd.Series:
    if kind == "date":
        fmt = date_format or "%Y-%m-%d"
    elif datetime_format:
        fmt = datetime_format
    elif series.dt.tz is not None:
        series, fmt = series.dt.tz_convert("UTC"), "%Y-%m-%dT%H:%M:%SZ"
    else:
        fmt = "%Y-%m-%dT%H:%M:%S"
    return series.dt.strftime(fmt).fillna("").astype(object)


def column_text(frame: pd.DataFrame, kinds: dict[str, str], spec: ReportSpec) -> dict[str, pd.Series]:
    """Every column of a prepared chunk as display strings, with the column's declared formats."""
    out = {}
    for name in frame.columns:
        column = spec.column(name)
        out[name] = text_values(
            frame[name],
            kinds[name],
            decimals=column.decimals if column else None,
            date_format=column.date_format if column else None,
        )
    return out


# --- Python values, for typed spreadsheet cells -----------------------------------------------------------

_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def python_values(series: pd.Series, kind: str) -> list[Any]:
    """The column as Python values for a typed cell: int, float, bool, date, naive datetime (UTC) or str."""
    import pandas as pd

    if kind == "date":
        series = series.dt.date
    elif kind == "datetime":
        if series.dt.tz is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        series = pd.Series(series.dt.to_pydatetime(), index=series.index, dtype=object)
    elif kind in ("string", "empty"):
        series = series.astype("string").str.replace(_ILLEGAL_XLSX, "\ufffd", regex=True)
    return series.astype(object).where(series.notna(), None).tolist()
