"""Errors of report rendering: the data does not fit the report's declaration (retrying cannot help)."""

from __future__ import annotations

from b2b_integrations.errors import FatalStepError


class ReportDataError(FatalStepError):
    """A column is missing, a value does not convert to its declared type, or a file cannot be read.

    Messages name the report's column (and row number where there is one), never connection secrets.
    """
