"""What a report looks like (built from config by ``reports.config``) and what rendering one returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FORMATS = ("pdf", "csv", "xml", "xlsx")
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "xml": "application/xml",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
COLUMN_TYPES = ("string", "integer", "number", "boolean", "date", "datetime")
SUMMARY_OPS = ("count", "sum", "avg", "min", "max")
CHART_TYPES = ("bar", "line", "pie")
CHART_OPS = ("sum", "count", "avg")


@dataclass(frozen=True)
class ColumnSpec:
    """One output column: which data column, its heading, and how its values are shown.

    ``type`` forces a type (values that do not convert are errors naming the row and column); None takes
    the type the data has. ``decimals`` and ``date_format`` (strftime) apply to CSV, XML and PDF text;
    xlsx keeps typed cells and uses ``decimals`` for the number format. ``width`` is a relative share of
    the page width in the PDF and a character width in xlsx. ``currency`` names the column holding each
    row's currency code: this column's values are money, and figures over it are kept per currency.
    """

    name: str
    label: str
    type: str | None = None
    decimals: int | None = None
    date_format: str | None = None
    width: float | None = None
    currency: str | None = None


@dataclass(frozen=True)
class SummarySpec:
    """A figure computed over every row (chunk by chunk): ``count`` (rows, or non-empty values of
    ``column``), ``sum``, ``avg``, ``min``, ``max`` of ``column``. With ``currency`` (the column holding
    ``column``'s currency), the figure is one value per currency, never a sum of different currencies."""

    label: str
    op: str
    column: str | None = None
    decimals: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class ChartSpec:
    """A chart of one aggregate: ``op`` of ``value`` (or the row count) per distinct ``category``.

    ``sort``: category (the category's own order, e.g. dates) or value (largest first). Past
    ``max_categories``, bar and pie charts keep the largest and add "Other"; line charts keep the last.
    """

    type: str
    category: str
    value: str | None
    op: str
    title: str
    max_categories: int
    sort: str


@dataclass(frozen=True)
class CsvOptions:
    """CSV dialect. ``quoting`` is minimal | all | nonnumeric | none (none escapes with ``escapechar``)."""

    delimiter: str = ","
    quotechar: str = '"'
    quoting: str = "minimal"
    escapechar: str | None = None
    lineterminator: str = "\n"
    encoding: str = "utf-8"
    header: bool = True
    date_format: str = "%Y-%m-%d"
    datetime_format: str | None = None
    decimals: int | None = None
    decimal: str = "."


@dataclass(frozen=True)
class XmlOptions:
    """XML shape: ``<root><record><element>value</element>...</record>...</root>``."""

    root: str = "report"
    record: str = "record"
    elements: dict[str, str] = field(default_factory=dict)
    nulls: str = "empty"  # empty: <element/>; omit: no element


@dataclass(frozen=True)
class XlsxOptions:
    """Sheet name (continued as "name (2)" past Excel's row limit), header row, column widths."""

    sheet: str = "Report"
    header: bool = True
    column_widths: dict[str, float] = field(default_factory=dict)
    freeze_header: bool = True
    date_format: str = "yyyy-mm-dd"
    datetime_format: str = "yyyy-mm-dd hh:mm:ss"


@dataclass(frozen=True)
class PageOptions:
    """PDF page: size (A4, letter, legal, A3), orientation, table font size, alternate row shading."""

    size: str = "A4"
    orientation: str = "portrait"
    font_size: float = 8.0
    zebra: bool = True


@dataclass(frozen=True)
class ReportSpec:
    """Everything about a report's rendering that does not change from run to run."""

    format: str
    title: str
    columns: tuple[ColumnSpec, ...] = ()  # empty: every column of the data, in its order
    summary: tuple[SummarySpec, ...] = ()
    chart: ChartSpec | None = None
    logo: str | None = None
    csv: CsvOptions = field(default_factory=CsvOptions)
    xml: XmlOptions = field(default_factory=XmlOptions)
    xlsx: XlsxOptions = field(default_factory=XlsxOptions)
    page: PageOptions = field(default_factory=PageOptions)

    def column(self, name: str) -> ColumnSpec | None:
        """The declared column called ``name``, if any."""
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class ReportMeta:
    """Per-run facts shown in the report (the PDF's header block and empty-result message)."""

    customer_name: str
    period_start: datetime
    period_end: datetime
    empty_note: str = ""
    logo_path: str | None = None  # resolved to a readable file by the caller


@dataclass(frozen=True)
class RenderResult:
    """What was written: the final path, the row count, the file's size and sha256, the summary figures
    (label -> JSON-safe value) and how many chunks were read."""

    path: str
    rows: int
    bytes: int
    sha256: str
    summary: dict[str, Any]
    chunks: int
