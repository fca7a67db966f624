"""Report rendering: rows in as an iterable of pandas DataFrame chunks, one file out (PDF, CSV, XML, xlsx).

Pure: no Airflow import, no network. Writers never hold more than one chunk of rows (the PDF spools its
formatted rows to a temporary file so its summary and chart can stand before the table), and every file
is written to a temporary name in its folder and renamed, so a reader never sees half a report.

- ``config.report_spec_from_config`` validates a step's ``render`` options and builds a :class:`ReportSpec`;
- ``render.render_report`` writes the file and returns a :class:`RenderResult` (rows, bytes, sha256,
  summary figures);
- ``query.sql_chunks`` streams a SQL query (named bind parameters) from an SQLAlchemy engine.
"""

from __future__ import annotations

from b2b_integrations.reports.spec import CONTENT_TYPES, FORMATS, RenderResult, ReportMeta, ReportSpec

__all__ = ["CONTENT_TYPES", "FORMATS", "RenderResult", "ReportMeta", "ReportSpec"]
