"""Validate a report step's ``render`` options and file name at config time; build the :class:`ReportSpec`.

Every problem is a ValueError whose message starts with the key it is about (``render.csv.quoting: ...``),
so the config loader can point at the line. Pure: no I/O (the logo file is checked when the report runs,
on the worker that reads it).
"""

from __future__ import annotations

import codecs
import re
import string
from collections.abc import Mapping
from datetime import date
from typing import Any

from b2b_integrations.reports.spec import (
    CHART_OPS,
    CHART_TYPES,
    COLUMN_TYPES,
    FORMATS,
    SUMMARY_OPS,
    ChartSpec,
    ColumnSpec,
    CsvOptions,
    PageOptions,
    ReportSpec,
    SummarySpec,
    XlsxOptions,
    XmlOptions,
)

RENDER_KEYS = ("title", "columns", "summary", "chart", "logo", "csv", "xml", "xlsx", "page")
FILE_NAME_PLACEHOLDERS = (
    "customer",
    "integration",
    "flow",
    "report",
    "ds",
    "ds_nodash",
    "period_start",
    "period_end",
    "format",
)
PAGE_SIZES = ("A4", "A3", "letter", "legal")
QUOTING = ("minimal", "all", "nonnumeric", "none")
LINE_TERMINATORS = {"\n": "\n", "\r\n": "\r\n", "\r": "\r", "lf": "\n", "crlf": "\r\n", "cr": "\r"}
LOGO_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")
# XML 1.0 Name without ':' (no namespaces): a letter or '_' first, then letters, digits, '_', '-', '.'.
_XML_NAME = re.compile(r"^[^\W\d][\w.\-]*$")
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
_SAMPLE_DATE = date(2026, 1, 31)
MAX_CHART_CATEGORIES = 400
MAX_SUMMARY_FIGURES = 12  # the PDF's first page holds the header block, every figure and the chart


def report_spec_from_config(
    report_format: str, render: Mapping[str, Any] | None, *, default_title: str = "Report"
) -> ReportSpec:
    """Check ``render`` (the step's ``render:`` mapping) and return the spec; ValueError names the key."""
    _choice(report_format, FORMATS, "format")
    options = _mapping(render or {}, "render")
    _known_keys(options, RENDER_KEYS, "render")
    title = _text(options.get("title", default_title), "render.title", max_length=200)
    columns = _columns(options.get("columns"))
    declared = {c.name for c in columns}
    currencies = {c.name: c.currency for c in columns if c.currency is not None}
    summary = _summary(options.get("summary"), declared, currencies)
    chart = _chart(options.get("chart"), declared)
    if chart is not None:
        _check_chart_currency(chart, currencies)
    logo = options.get("logo")
    if logo is not None:
        logo = _text(logo, "render.logo")
        if not logo.lower().endswith(LOGO_SUFFIXES):
            raise ValueError(f"render.logo: expected a {'/'.join(LOGO_SUFFIXES)} image, got {logo!r}")
    xml = _xml(options.get("xml"), columns)
    if report_format == "xml":
        _check_xml_columns(columns, xml)
    return ReportSpec(
        format=report_format,
        title=title,
        columns=columns,
        summary=summary,
        chart=chart,
        logo=logo,
        csv=_csv(options.get("csv")),
        xml=xml,
        xlsx=_xlsx(options.get("xlsx"), declared),
        page=_page(options.get("page")),
    )


def default_title(report: str) -> str:
    """A report's title when the config gives none: its identifier in words (monthly_invoices -> Monthly
    invoices)."""
    return report.replace("_", " ").capitalize()


def check_xml_name(name: str, key: str) -> str:
    """An XML element name (no namespace prefix, not starting with 'xml'), or ValueError naming the key."""
    if not isinstance(name, str) or not _XML_NAME.match(name) or name.lower().startswith("xml"):
        raise ValueError(
            f"{key}: {name!r} is not a valid XML element name (a letter or '_' first, then letters, digits, "
            "'_', '-', '.'; not starting with 'xml')"
        )
    return name


def check_file_name(template: str, key: str = "file_name") -> None:
    """Check a file-name template: known placeholders only, and a safe single file name once filled."""
    sample = {
        "customer": "acme",
        "integration": "billing",
        "flow": "monthly",
        "report": "invoices",
        "ds": "2026-01-31",
        "ds_nodash": "20260131",
        "period_start": _SAMPLE_DATE,
        "period_end": _SAMPLE_DATE,
        "format": "pdf",
    }
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as e:  # an unmatched brace
        raise ValueError(f"{key}: cannot fill {template!r}: {e}") from None
    for _, name, _, conversion in fields:
        if name is None:
            continue
        if name not in FILE_NAME_PLACEHOLDERS:
            raise ValueError(
                f"{key}: unknown placeholder {{{name}}}; expected one of "
                + ", ".join(f"{{{p}}}" for p in FILE_NAME_PLACEHOLDERS)
            )
        if conversion:
            raise ValueError(f"{key}: conversions such as '!{conversion}' are not allowed in {{{name}}}")
    format_file_name(template, sample, key)


def format_file_name(template: str, values: Mapping[str, Any], key: str = "file_name") -> str:
    """Fill the template; ValueError unless the result is one safe file name (no folders, no '..')."""
    try:
        name = template.format_map(dict(values))
    except (KeyError, ValueError, IndexError, AttributeError) as e:
        raise ValueError(f"{key}: cannot fill {template!r}: {e}") from None
    if (
        not name
        or len(name) > 200
        or "/" in name
        or "\\" in name
        or ".." in name
        or name.startswith((".", " "))
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    ):
        raise ValueError(
            f"{key}: {template!r} gives {name!r}, which is not a safe file name (one name, no '/', '\\' or "
            "'..', no leading '.' or control characters, at most 200 characters)"
        )
    return name


def _columns(raw: Any) -> tuple[ColumnSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ValueError("render.columns: expected a non-empty list of column names or {name, label, ...}")
    columns: list[ColumnSpec] = []
    for index, item in enumerate(raw):
        key = f"render.columns[{index}]"
        if isinstance(item, str):
            columns.append(ColumnSpec(name=_text(item, key), label=item))
            continue
        entry = _mapping(item, key)
        _known_keys(entry, ("name", "label", "type", "decimals", "date_format", "width", "currency"), key)
        name = _text(entry.get("name"), f"{key}.name")
        width = entry.get("width")
        currency = entry.get("currency")
        columns.append(
            ColumnSpec(
                name=name,
                label=_text(entry.get("label", name), f"{key}.label", max_length=100),
                type=_choice(entry["type"], COLUMN_TYPES, f"{key}.type") if "type" in entry else None,
                decimals=_optional_int(entry.get("decimals"), f"{key}.decimals", 0, 10),
                date_format=_strftime(entry.get("date_format"), f"{key}.date_format"),
                width=_number(width, f"{key}.width", 0.5, 255) if width is not None else None,
                currency=_text(currency, f"{key}.currency") if currency is not None else None,
            )
        )
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"render.columns: column(s) {duplicates} listed more than once")
    _check_currency_columns(columns)
    return tuple(columns)


def _check_currency_columns(columns: list[ColumnSpec]) -> None:
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


def _summary(raw: Any, declared: set[str], currencies: Mapping[str, str]) -> tuple[SummarySpec, ...]:
    if raw is None:
        return (SummarySpec(label="Rows", op="count"),)
    if not isinstance(raw, list) or len(raw) > MAX_SUMMARY_FIGURES:
        raise ValueError(
            f"render.summary: expected a list of at most {MAX_SUMMARY_FIGURES} {{label, op, column}}"
        )
    figures: list[SummarySpec] = []
    for index, item in enumerate(raw):
        key = f"render.summary[{index}]"
        entry = _mapping(item, key)
        _known_keys(entry, ("label", "op", "column", "decimals"), key)
        op = _choice(entry.get("op", "count"), SUMMARY_OPS, f"{key}.op")
        column = entry.get("column")
        if column is not None:
            column = _declared(_text(column, f"{key}.column"), declared, f"{key}.column")
        elif op != "count":
            raise ValueError(f"{key}.column: op {op!r} needs the column it applies to")
        default_label = "Rows" if column is None else f"{op.capitalize()} of {column}"
        figures.append(
            SummarySpec(
                label=_text(entry.get("label", default_label), f"{key}.label", max_length=100),
                op=op,
                column=column,
                decimals=_optional_int(entry.get("decimals"), f"{key}.decimals", 0, 10),
                # Counting rows is the same whatever their currency; any other figure is money per currency.
                currency=currencies.get(column) if column is not None and op != "count" else None,
            )
        )
    labels = [f.label for f in figures]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"render.summary: label(s) {duplicates} used more than once")
    return tuple(figures)


def _chart(raw: Any, declared: set[str]) -> ChartSpec | None:
    if raw is None:
        return None
    entry = _mapping(raw, "render.chart")
    _known_keys(entry, ("type", "category", "value", "op", "title", "max_categories", "sort"), "render.chart")
    kind = _choice(entry.get("type", "bar"), CHART_TYPES, "render.chart.type")
    category = _declared(
        _text(entry.get("category"), "render.chart.category"), declared, "render.chart.category"
    )
    value = entry.get("value")
    if value is not None:
        value = _declared(_text(value, "render.chart.value"), declared, "render.chart.value")
    op = _choice(entry.get("op", "sum" if value else "count"), CHART_OPS, "render.chart.op")
    if op != "count" and value is None:
        raise ValueError(f"render.chart.value: op {op!r} needs the value column it applies to")
    default_max = 60 if kind == "line" else 12
    max_categories = _optional_int(
        entry.get("max_categories", default_max), "render.chart.max_categories", 2, MAX_CHART_CATEGORIES
    )
    what = "Rows" if op == "count" else f"{op.capitalize()} of {value}"
    return ChartSpec(
        type=kind,
        category=category,
        value=value,
        op=op,
        title=_text(entry.get("title", f"{what} by {category}"), "render.chart.title", max_length=200),
        max_categories=max_categories or default_max,
        sort=_choice(
            entry.get("sort", "category" if kind == "line" else "value"),
            ("category", "value"),
            "render.chart.sort",
        ),
    )


def _check_chart_currency(chart: ChartSpec, currencies: Mapping[str, str]) -> None:
    currency = currencies.get(chart.value) if chart.value is not None and chart.op != "count" else None
    if currency is not None and chart.category != currency:
        raise ValueError(
            f"render.chart.value: {chart.value!r} is money in the currencies of column {currency!r}, and a "
            f"{chart.op} by {chart.category!r} would add different currencies together; chart it by currency "
            f"(category: {currency}), count rows (op: count), or select one currency in the query"
        )


def _csv(raw: Any) -> CsvOptions:
    key = "render.csv"
    entry = _mapping(raw or {}, key)
    _known_keys(entry, tuple(CsvOptions.__dataclass_fields__), key)
    defaults = CsvOptions()
    delimiter = _single_char(entry.get("delimiter", defaults.delimiter), f"{key}.delimiter")
    quotechar = _single_char(entry.get("quotechar", defaults.quotechar), f"{key}.quotechar")
    if delimiter == quotechar:
        raise ValueError(f"{key}.quotechar: must differ from the delimiter {delimiter!r}")
    quoting = _choice(entry.get("quoting", defaults.quoting), QUOTING, f"{key}.quoting")
    escapechar = entry.get("escapechar")
    if escapechar is not None:
        escapechar = _single_char(escapechar, f"{key}.escapechar")
    elif quoting == "none":
        escapechar = "\\"  # without one, a value holding the delimiter could not be written at all
    terminator = entry.get("lineterminator", defaults.lineterminator)
    if terminator not in LINE_TERMINATORS:
        raise ValueError(f"{key}.lineterminator: expected one of lf, crlf, cr ('\\n', '\\r\\n', '\\r')")
    decimal = _choice(entry.get("decimal", defaults.decimal), (".", ","), f"{key}.decimal")
    if decimal == delimiter:
        raise ValueError(f"{key}.decimal: {decimal!r} is also the delimiter; choose another delimiter")
    return CsvOptions(
        delimiter=delimiter,
        quotechar=quotechar,
        quoting=quoting,
        escapechar=escapechar,
        lineterminator=LINE_TERMINATORS[terminator],
        encoding=_encoding(entry.get("encoding", defaults.encoding), f"{key}.encoding"),
        header=_bool(entry.get("header", defaults.header), f"{key}.header"),
        date_format=_strftime(entry.get("date_format", defaults.date_format), f"{key}.date_format")
        or defaults.date_format,
        datetime_format=_strftime(entry.get("datetime_format"), f"{key}.datetime_format"),
        decimals=_optional_int(entry.get("decimals"), f"{key}.decimals", 0, 10),
        decimal=decimal,
    )


def _xml(raw: Any, columns: tuple[ColumnSpec, ...]) -> XmlOptions:
    key = "render.xml"
    entry = _mapping(raw or {}, key)
    _known_keys(entry, ("root", "record", "elements", "nulls"), key)
    defaults = XmlOptions()
    root = check_xml_name(entry.get("root", defaults.root), f"{key}.root")
    record = check_xml_name(entry.get("record", defaults.record), f"{key}.record")
    if root == record:
        raise ValueError(f"{key}.record: must differ from the root element {root!r}")
    elements = dict(_mapping(entry.get("elements") or {}, f"{key}.elements"))
    for column, element in elements.items():
        check_xml_name(element, f"{key}.elements.{column}")
    if columns:
        unknown = sorted(set(elements) - {c.name for c in columns})
        if unknown:
            raise ValueError(f"{key}.elements: column(s) {unknown} are not in render.columns")
    targets = list(elements.values())
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ValueError(f"{key}.elements: element name(s) {repeated} used for more than one column")
    nulls = _choice(entry.get("nulls", defaults.nulls), ("empty", "omit"), f"{key}.nulls")
    return XmlOptions(root=root, record=record, elements=elements, nulls=nulls)


def _check_xml_columns(columns: tuple[ColumnSpec, ...], xml: XmlOptions) -> None:
    for index, column in enumerate(columns):
        if column.name not in xml.elements:
            check_xml_name(column.name, f"render.columns[{index}] (map it in render.xml.elements)")


def _xlsx(raw: Any, declared: set[str]) -> XlsxOptions:
    key = "render.xlsx"
    entry = _mapping(raw or {}, key)
    _known_keys(entry, tuple(XlsxOptions.__dataclass_fields__), key)
    defaults = XlsxOptions()
    sheet = _text(entry.get("sheet", defaults.sheet), f"{key}.sheet", max_length=25)
    if _SHEET_FORBIDDEN.search(sheet) or sheet.startswith("'") or sheet.endswith("'"):
        raise ValueError(f"{key}.sheet: {sheet!r} may not contain [ ] : * ? / \\ or start/end with a quote")
    widths = _mapping(entry.get("column_widths") or {}, f"{key}.column_widths")
    column_widths = {
        _declared(str(name), declared, f"{key}.column_widths"): _number(
            width, f"{key}.column_widths.{name}", 1, 255
        )
        for name, width in widths.items()
    }
    return XlsxOptions(
        sheet=sheet,
        header=_bool(entry.get("header", defaults.header), f"{key}.header"),
        column_widths=column_widths,
        freeze_header=_bool(entry.get("freeze_header", defaults.freeze_header), f"{key}.freeze_header"),
        date_format=_text(entry.get("date_format", defaults.date_format), f"{key}.date_format"),
        datetime_format=_text(
            entry.get("datetime_format", defaults.datetime_format), f"{key}.datetime_format"
        ),
    )


def _page(raw: Any) -> PageOptions:
    key = "render.page"
    entry = _mapping(raw or {}, key)
    _known_keys(entry, tuple(PageOptions.__dataclass_fields__), key)
    defaults = PageOptions()
    return PageOptions(
        size=_choice(entry.get("size", defaults.size), PAGE_SIZES, f"{key}.size"),
        orientation=_choice(
            entry.get("orientation", defaults.orientation), ("portrait", "landscape"), f"{key}.orientation"
        ),
        font_size=_number(entry.get("font_size", defaults.font_size), f"{key}.font_size", 5, 14),
        zebra=_bool(entry.get("zebra", defaults.zebra), f"{key}.zebra"),
    )


# --- small checkers: each returns the clean value or raises ValueError naming the key -------------------


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def _known_keys(entry: Mapping[str, Any], allowed: tuple[str, ...], key: str) -> None:
    unknown = sorted(str(k) for k in entry if k not in allowed)
    if unknown:
        raise ValueError(f"{key}: unknown option(s) {unknown}; expected some of {list(allowed)}")


def _text(value: Any, key: str, max_length: int = 1000) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: expected a non-empty string, got {value!r}")
    if len(value) > max_length:
        raise ValueError(f"{key}: at most {max_length} characters (got {len(value)})")
    return value


def _choice(value: Any, choices: tuple[str, ...], key: str) -> str:
    if value not in choices:
        raise ValueError(f"{key}: expected one of {list(choices)}, got {value!r}")
    return str(value)


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return value


def _number(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{key}: expected a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _optional_int(value: Any, key: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def _single_char(value: Any, key: str) -> str:
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
        raise ValueError(f"{key}: expected one character (not a line break), got {value!r}")
    return value


def _encoding(value: Any, key: str) -> str:
    try:
        return codecs.lookup(_text(value, key)).name
    except LookupError:
        raise ValueError(f"{key}: unknown encoding {value!r}") from None


def _strftime(value: Any, key: str) -> str | None:
    if value is None:
        return None
    text = _text(value, key, max_length=100)
    if "%" not in text:
        raise ValueError(f"{key}: {text!r} has no strftime directive such as %Y-%m-%d")
    try:
        _SAMPLE_DATE.strftime(text)
    except ValueError as e:  # e.g. a lone '%' at the end
        raise ValueError(f"{key}: {text!r} is not a valid strftime format: {e}") from None
    return text


def _declared(name: str, declared: set[str], key: str) -> str:
    if declared and name not in declared:
        raise ValueError(f"{key}: column {name!r} is not in render.columns {sorted(declared)}")
    return name
