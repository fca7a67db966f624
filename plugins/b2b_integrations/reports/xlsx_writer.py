"""Excel (xlsx) with openpyxl's write-only workbook: rows stream to the sheet's XML as they come.

Cells are typed: numbers stay numbers (with a number format when the column declares decimals), dates and
datetimes are Excel dates (timezone-aware values converted to UTC, since Excel has no time zones), text
that would start a formula (``=...``) is stored as text. Past Excel's 1,048,576 rows the report continues
on a new sheet ``"<sheet> (2)"`` with the header repeated: data is never cut, and the choice is visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from b2b_integrations.reports.spec import ReportSpec
from b2b_integrations.reports.stream import RowStream
from b2b_integrations.reports.values import python_values

if TYPE_CHECKING:
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

XLSX_MAX_ROWS = 1_048_576  # Excel's limit per sheet, header row included


class _Sheets:
    """Opens sheets as rows come, a new one whenever the current one is full."""

    def __init__(
        self, workbook: Any, spec: ReportSpec, columns: list[str], labels: list[str], rows_per_sheet: int
    ) -> None:
        self.workbook = workbook
        self.spec = spec
        self.columns = columns
        self.labels = labels
        self.capacity = rows_per_sheet - (1 if spec.xlsx.header else 0)
        self.count = 0
        self.sheet: WriteOnlyWorksheet | None = None
        self.used = 0

    def current(self) -> WriteOnlyWorksheet:
        if self.sheet is None or self.used >= self.capacity:
            self.sheet = self._open()
            self.used = 0
        return self.sheet

    def _open(self) -> WriteOnlyWorksheet:
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        self.count += 1
        options = self.spec.xlsx
        title = options.sheet if self.count == 1 else f"{options.sheet} ({self.count})"
        sheet = self.workbook.create_sheet(title)
        for index, name in enumerate(self.columns, start=1):
            column = self.spec.column(name)
            width = options.column_widths.get(name) or (column.width if column else None)
            if width:
                sheet.column_dimensions[get_column_letter(index)].width = width
        if options.header:
            if options.freeze_header:
                sheet.freeze_panes = "A2"
            bold = Font(bold=True)
            cells = []
            for label in self.labels:
                cell = WriteOnlyCell(sheet, value=label)
                cell.font = bold
                cell.data_type = "s"
                cells.append(cell)
            sheet.append(cells)
        return sheet


def write_xlsx(
    stream: RowStream, path: Path, spec: ReportSpec, *, rows_per_sheet: int = XLSX_MAX_ROWS
) -> None:
    """Write ``stream`` to one workbook; an empty result is a sheet with the header row only."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheets: _Sheets | None = None
    for frame, kinds in stream:
        if sheets is None:
            sheets = _Sheets(workbook, spec, list(frame.columns), stream.labels(), rows_per_sheet)
        if not len(frame):
            continue
        columns = [_cells(frame[name], kinds[name], spec, name) for name in frame.columns]
        for row in zip(*columns, strict=True):
            sheet = sheets.current()
            sheet.append(_bind(sheet, row))
            sheets.used += 1
    if sheets is None:
        sheets = _Sheets(workbook, spec, list(stream.columns or []), stream.labels(), rows_per_sheet)
    if sheets.sheet is None:
        sheets.current()
    workbook.save(path)


def _cells(series: Any, kind: str, spec: ReportSpec, name: str) -> list[Any]:
    """Python values; values that need a number format or must not become formulas are (value, format)."""
    values = python_values(series, kind)
    column = spec.column(name)
    fmt = None
    if kind == "number" and column is not None and column.decimals is not None:
        fmt = "#,##0" + ("." + "0" * column.decimals if column.decimals else "")
    elif kind == "date":
        fmt = spec.xlsx.date_format
    elif kind == "datetime":
        fmt = spec.xlsx.datetime_format
    if fmt is not None:
        return [_Formatted(v, fmt) if v is not None else None for v in values]
    if kind in ("string", "empty"):
        return [_Formatted(v, None) if isinstance(v, str) and v.startswith("=") else v for v in values]
    return values


class _Formatted:
    """A value to write as a styled cell (number format) or as forced text (``fmt`` None)."""

    __slots__ = ("fmt", "value")

    def __init__(self, value: Any, fmt: str | None) -> None:
        self.value = value
        self.fmt = fmt


def _bind(sheet: WriteOnlyWorksheet, row: tuple[Any, ...]) -> list[Any]:
    from openpyxl.cell import WriteOnlyCell

    out: list[Any] = []
    for value in row:
        if isinstance(value, _Formatted):
            cell = WriteOnlyCell(sheet, value=value.value)
            if value.fmt is None:
                cell.data_type = "s"  # text that looks like a formula stays text
            else:
                cell.number_format = value.fmt
            out.append(cell)
        else:
            out.append(value)
    return out
