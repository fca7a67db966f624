"""Stream a report's SQL query in DataFrame chunks, values bound as named parameters.

The statement goes through SQLAlchemy ``text()`` with ``:name`` binds, so values never become SQL text.
Results are streamed (``stream_results``: a server-side cursor on PostgreSQL), so a million rows never sit
in memory; pandas turns each batch into a DataFrame (Decimals become floats).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from b2b_integrations.reports.errors import ReportDataError

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine


def bind_names(sql: str) -> list[str]:
    """The ``:name`` parameters of a statement, as SQLAlchemy parses them (``::type`` casts are not binds)."""
    from sqlalchemy import text

    return list(text(sql).compile().params)


def check_parameters(sql: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The values the statement uses; ReportDataError naming any parameter without a value."""
    names = bind_names(sql)
    missing = [name for name in names if name not in parameters]
    if missing:
        raise ReportDataError(
            f"SQL parameter(s) {[':' + m for m in missing]} have no value; available: "
            f"{sorted(':' + p for p in parameters)} (declare more under source.parameters)"
        )
    return {name: parameters[name] for name in names}


def sql_chunks(
    engine: Engine, sql: str, parameters: Mapping[str, Any], chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """Yield the query's rows ``chunk_rows`` at a time; at least one (possibly empty) chunk, so an empty
    result still has its columns. The connection is closed when the iterator ends or is closed."""
    import pandas as pd
    from sqlalchemy import text

    values = check_parameters(sql, parameters)
    with engine.connect() as connection:
        streaming = connection.execution_options(stream_results=True, max_row_buffer=chunk_rows)
        try:
            yield from pd.read_sql(text(sql), streaming, params=values, chunksize=chunk_rows)
        except pd.errors.DatabaseError as e:
            # pandas wraps the first execute's error (its message repeats the SQL and the parameter values);
            # errors while fetching later chunks come unwrapped: callers see SQLAlchemy's either way.
            if isinstance(e.__cause__, Exception):
                raise e.__cause__ from None
            raise
