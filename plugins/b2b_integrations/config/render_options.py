"""The ``render`` block of a report step: title, columns, summary, chart, logo, page and the CSV, XML and
Excel options (``reports.config.report_spec_from_config`` builds the report's spec from it).

Each leaf keeps the message users had when these options were checked by hand (``expected one of ...``);
the key path comes from the model (``render.csv.quoting``). Rules across keys (a summary's column must be
one of ``columns``, money columns, XML element names) are the block's own validator, skipped while any
leaf still holds a ``${...}`` reference: they are checked again once it is filled in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from b2b_integrations.config.options import OR_REFERENCE, OptionBlock, known_encoding
from b2b_integrations.config.references import iter_references
from b2b_integrations.reports.spec import CHART_OPS, CHART_TYPES, COLUMN_TYPES, SUMMARY_OPS

PAGE_SIZES = ("A4", "A3", "letter", "legal")
QUOTING = ("minimal", "all", "nonnumeric", "none")
LINE_TERMINATORS = {"\n": "\n", "\r\n": "\r\n", "\r": "\r", "lf": "\n", "crlf": "\r\n", "cr": "\r"}
LOGO_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")
MAX_CHART_CATEGORIES = 400
MAX_SUMMARY_FIGURES = 12  # the PDF's first page holds the header block, every figure and the chart
# XML 1.0 Name without ':' (no namespaces): a letter or '_' first, then letters, digits, '_', '-', '.'.
_XML_NAME = re.compile(r"^[^\W\d][\w.\-]*$")
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_SAMPLE_DATE = date(2026, 1, 31)


# --- leaves: each check returns the value or raises ValueError with the message users know -------------


def _check(check: Callable[[Any], Any]) -> BeforeValidator:
    return BeforeValidator(check)


def text(max_length: int = 1000) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected a non-empty string, got {value!r}")
        if len(value) > max_length:
            raise ValueError(f"at most {max_length} characters (got {len(value)})")
        return value

    return check


def choice(choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"expected one of {list(choices)}, got {value!r}")
        return value

    return check


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def number(low: float, high: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"expected a number from {low:g} to {high:g}, got {value!r}")
        return value

    return check


def whole(low: int, high: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        return value

    return check


def _single_char(value: Any) -> Any:
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
        raise ValueError(f"expected one character (not a line break), got {value!r}")
    return value


def _encoding(value: Any) -> Any:
    return known_encoding(text()(value))


def _strftime(value: Any) -> Any:
    text(100)(value)
    if "%" not in value:
        raise ValueError(f"{value!r} has no strftime directive such as %Y-%m-%d")
    try:
        _SAMPLE_DATE.strftime(value)
    except ValueError as e:  # e.g. a lone '%' at the end
        raise ValueError(f"{value!r} is not a valid strftime format: {e}") from None
    return value


def xml_name(value: Any) -> Any:
    """An XML element name (no namespace prefix, not starting with 'xml')."""
    if not isinstance(value, str) or not _XML_NAME.match(value) or value.lower().startswith("xml"):
        raise ValueError(
            f"{value!r} is not a valid XML element name (a letter or '_' first, then letters, digits, "
            "'_', '-', '.'; not starting with 'xml')"
        )
    return value


def _logo(value: Any) -> Any:
    text()(value)
    if not value.lower().endswith(LOGO_SUFFIXES):
        raise ValueError(f"expected a {'/'.join(LOGO_SUFFIXES)} image, got {value!r}")
    return value


def _sheet(value: Any) -> Any:
    text(25)(value)
    if _SHEET_FORBIDDEN.search(value) or value.startswith("'") or value.endswith("'"):
        raise ValueError(f"{value!r} may not contain [ ] : * ? / \\ or start/end with a quote")
    return value


def _line_terminator(value: Any) -> Any:
    if value not in LINE_TERMINATORS:
        raise ValueError("expected one of lf, crlf, cr ('\\n', '\\r\\n', '\\r')")
    return value


Text = Annotated[str, _check(text()), OR_REFERENCE]
Label = Annotated[str, _check(text(100)), OR_REFERENCE]
Title = Annotated[str, _check(text(200)), OR_REFERENCE]
Flag = Annotated[bool, _check(_flag), OR_REFERENCE]
Decimals = Annotated[int, Field(ge=0, le=10), _check(whole(0, 10)), OR_REFERENCE]
Strftime = Annotated[str, _check(_strftime), OR_REFERENCE]
SingleChar = Annotated[str, Field(min_length=1, max_length=1), _check(_single_char), OR_REFERENCE]
XmlName = Annotated[str, _check(xml_name), OR_REFERENCE]


def _one_of(choices: tuple[str, ...]) -> Any:
    return Annotated[
        str, Field(json_schema_extra={"enum": list(choices)}), _check(choice(choices)), OR_REFERENCE
    ]


ColumnType = _one_of(COLUMN_TYPES)
SummaryOp = _one_of(SUMMARY_OPS)
ChartType = _one_of(CHART_TYPES)
ChartOp = _one_of(CHART_OPS)


# --- the blocks -------------------------------------------------------------------------------------------


class _RenderBlock(OptionBlock):
    unknown_keys: ClassVar[str | None] = "unknown option(s) {unknown}; expected some of {declared}"


class RenderColumn(_RenderBlock):
    """One output column: a data column's name, or ``{name, label, type, ...}``."""

    name: Text = Field(description="Data column shown.")
    label: Label | None = Field(None, description="Heading (default: the name).")
    type: ColumnType | None = Field(None, description="How values are shown (default: as they come).")
    decimals: Decimals | None = Field(None, description="Digits after the decimal point.")
    date_format: Strftime | None = Field(None, description="strftime format of dates.")
    width: Annotated[float, _check(number(0.5, 255)), OR_REFERENCE] | None = Field(
        None, description="Column width (PDF: relative; xlsx: characters)."
    )
    currency: Text | None = Field(
        None, description="Column holding each row's currency code: this column's values are money."
    )

    @model_validator(mode="before")
    @classmethod
    def _a_name_alone(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [{"type": "string", "minLength": 1}, handler(schema)]}


class SummaryFigure(_RenderBlock):
    """A figure over every row: ``count`` (rows, or non-empty values of ``column``), sum, avg, min, max."""

    label: Label | None = Field(None, description="Shown beside the figure (default: 'Rows', 'Sum of x').")
    op: SummaryOp | None = Field(None, description="count (default), sum, avg, min or max.")
    column: Text | None = Field(None, description="Column the figure is about (all but count need one).")
    decimals: Decimals | None = Field(None, description="Digits after the decimal point.")


class RenderChart(_RenderBlock):
    """A chart of ``op`` of ``value`` (or the row count) per distinct ``category``."""

    type: ChartType | None = Field(None, description="bar (default), line or pie.")
    category: Text = Field(description="Column whose distinct values are the bars, points or slices.")
    value: Text | None = Field(None, description="Column aggregated (default: rows are counted).")
    op: ChartOp | None = Field(None, description="sum (default with a value), count or avg.")
    title: Title | None = Field(None, description="Default: 'Sum of value by category'.")
    max_categories: Annotated[int, _check(whole(2, MAX_CHART_CATEGORIES)), OR_REFERENCE] | None = Field(
        None, description="The largest ones shown, the rest summed as 'Other' (default 12; line: 60)."
    )
    sort: _one_of(("category", "value")) | None = Field(  # type: ignore[valid-type]
        None, description="category (line default) or value (largest first, default)."
    )


class CsvRender(_RenderBlock):
    """The CSV dialect of a csv report."""

    delimiter: SingleChar | None = Field(None, description="Default ','.")
    quotechar: SingleChar | None = Field(None, description="Default '\"'.")
    quoting: _one_of(QUOTING) | None = Field(None, description="minimal (default), all, nonnumeric, none.")  # type: ignore[valid-type]
    escapechar: SingleChar | None = Field(None, description="Default none ('\\\\' with quoting none).")
    lineterminator: (
        Annotated[
            str,
            Field(json_schema_extra={"enum": list(LINE_TERMINATORS)}),
            _check(_line_terminator),
            OR_REFERENCE,
        ]
        | None
    ) = Field(None, description="lf (default), crlf or cr.")
    encoding: Annotated[str, _check(_encoding), OR_REFERENCE] | None = Field(
        None, description="Default utf-8."
    )
    header: Flag | None = Field(None, description="Write a header row (default true).")
    date_format: Strftime | None = Field(None, description="strftime format of dates (default %Y-%m-%d).")
    datetime_format: Strftime | None = Field(None, description="strftime format of date-times.")
    decimals: Decimals | None = Field(None, description="Digits after the decimal point of numbers.")
    decimal: _one_of((".", ",")) | None = Field(None, description="Decimal separator (default '.').")  # type: ignore[valid-type]


class XmlRender(_RenderBlock):
    """XML shape: ``<root><record><element>value</element>...</record>...</root>``."""

    root: XmlName | None = Field(None, description="Root element (default report).")
    record: XmlName | None = Field(None, description="Element of each row (default record).")
    elements: dict[str, XmlName] = Field(default_factory=dict, description="Column -> element name.")
    nulls: _one_of(("empty", "omit")) | None = Field(  # type: ignore[valid-type]
        None, description="empty (default): <element/>; omit: no element."
    )


class XlsxRender(_RenderBlock):
    """Excel sheet options."""

    sheet: Annotated[str, _check(_sheet), OR_REFERENCE] | None = Field(None, description="Default Report.")
    header: Flag | None = Field(None, description="Write a header row (default true).")
    column_widths: dict[str, Annotated[float, _check(number(1, 255)), OR_REFERENCE]] = Field(
        default_factory=dict, description="Column -> width in characters."
    )
    freeze_header: Flag | None = Field(None, description="Keep the header row in view (default true).")
    date_format: Text | None = Field(None, description="Excel number format of dates (default yyyy-mm-dd).")
    datetime_format: Text | None = Field(None, description="Excel number format of date-times.")


class PageRender(_RenderBlock):
    """The PDF page."""

    size: _one_of(PAGE_SIZES) | None = Field(None, description="A4 (default), A3, letter or legal.")  # type: ignore[valid-type]
    orientation: _one_of(("portrait", "landscape")) | None = Field(None, description="Default portrait.")  # type: ignore[valid-type]
    font_size: Annotated[float, _check(number(5, 14)), OR_REFERENCE] | None = Field(
        None, description="Table font size in points (default 8)."
    )
    zebra: Flag | None = Field(None, description="Shade every other row (default true).")


class RenderOptions(_RenderBlock):
    """How a report looks; every key is optional."""

    title: Title | None = Field(None, description="Default: the report identifier in words.")
    columns: list[RenderColumn] | None = Field(
        None, min_length=1, description="Columns shown, in order (default: every column of the data)."
    )
    summary: list[SummaryFigure] | None = Field(
        None,
        max_length=MAX_SUMMARY_FIGURES,
        description="Figures over every row (default: the row count).",
    )
    chart: RenderChart | None = Field(None, description="A chart of one aggregate (PDF).")
    logo: Annotated[str, _check(_logo), OR_REFERENCE] | None = Field(
        None, description="Image file shown in the PDF header (.png, .jpg, .gif), read on the worker."
    )
    csv: CsvRender | None = Field(None, description="CSV options.")
    xml: XmlRender | None = Field(None, description="XML options.")
    xlsx: XlsxRender | None = Field(None, description="Excel options.")
    page: PageRender | None = Field(None, description="PDF page options.")

    @model_validator(mode="after")
    def _check_across_keys(self) -> RenderOptions:
        if any(True for _ in iter_references(self.model_dump())):
            return self
        columns = self.columns or []
        names = [c.name for c in columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"render.columns: column(s) {duplicates} listed more than once")
        declared = set(names)
        currencies = _check_currency_columns(columns)
        for index, figure in enumerate(self.summary or []):
            key = f"render.summary[{index}]"
            if figure.column is not None:
                _declared(figure.column, declared, f"{key}.column")
            elif (figure.op or "count") != "count":
                raise ValueError(f"{key}.column: op {figure.op!r} needs the column it applies to")
        if self.chart is not None:
            _check_chart(self.chart, declared, currencies)
        if self.csv is not None:
            _check_csv(self.csv)
        if self.xml is not None:
            _check_xml(self.xml, declared)
        if self.xlsx is not None:
            for name in self.xlsx.column_widths:
                _declared(name, declared, "render.xlsx.column_widths")
        return self


def _declared(name: str, declared: set[str], key: str) -> None:
    if declared and name not in declared:
        raise ValueError(f"{key}: column {name!r} is not in render.columns {sorted(declared)}")


def _check_currency_columns(columns: list[RenderColumn]) -> dict[str, str]:
    """Money column -> its currency column, once each pair is checked."""
    by_name = {c.name: c for c in columns}
    for index, column in enumerate(columns):
        if column.currency is None:
            continue
        key = f"render.columns[{index}].currency"
        code = by_name.get(column.currency)
        if code is None:
            raise ValueError(f"{key}: column {column.currency!r} is not in render.columns {sorted(by_name)}")
        if code is column or code.currency is not None or code.type in ("number", "integer"):
            raise ValueError(
                f"{key}: {column.currency!r} must be the column of currency codes (EUR, USD ...), "
                f"not a money or number column"
            )
        if column.type not in (None, "number", "integer"):
            raise ValueError(
                f"{key}: only number and integer columns are money, {column.name!r} is {column.type}"
            )
    return {c.name: c.currency for c in columns if c.currency is not None}


def _check_chart(chart: RenderChart, declared: set[str], currencies: Mapping[str, str]) -> None:
    _declared(chart.category, declared, "render.chart.category")
    if chart.value is not None:
        _declared(chart.value, declared, "render.chart.value")
    op = chart.op or ("sum" if chart.value else "count")
    if op != "count" and chart.value is None:
        raise ValueError(f"render.chart.value: op {op!r} needs the value column it applies to")
    currency = currencies.get(chart.value) if chart.value is not None and op != "count" else None
    if currency is not None and chart.category != currency:
        raise ValueError(
            f"render.chart.value: {chart.value!r} is money in the currencies of column {currency!r}, and a "
            f"{op} by {chart.category!r} would add different currencies together; chart it by currency "
            f"(category: {currency}), count rows (op: count), or select one currency in the query"
        )


def _check_xml(xml: XmlRender, declared: set[str]) -> None:
    if (xml.root or "report") == (xml.record or "record"):
        raise ValueError(f"render.xml.record: must differ from the root element {xml.root or 'report'!r}")
    if declared:
        unknown = sorted(set(xml.elements) - declared)
        if unknown:
            raise ValueError(f"render.xml.elements: column(s) {unknown} are not in render.columns")
    targets = list(xml.elements.values())
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ValueError(f"render.xml.elements: element name(s) {repeated} used for more than one column")


def _check_csv(csv: CsvRender) -> None:
    delimiter, quotechar = csv.delimiter or ",", csv.quotechar or '"'
    if delimiter == quotechar:
        raise ValueError(f"render.csv.quotechar: must differ from the delimiter {delimiter!r}")
    if (csv.decimal or ".") == delimiter:
        raise ValueError(
            f"render.csv.decimal: {csv.decimal!r} is also the delimiter; choose another delimiter"
        )
