"""Build a report step's :class:`ReportSpec` from its ``render`` options; check its file name.

The ``render`` block is validated by its config model (``config/render_options.RenderOptions``), at config
time and here again on the resolved values; this module applies the defaults that depend on other keys and
the rules that need the report's format. Every problem is a ValueError whose message starts with the key it
is about (``render.csv.quoting: ...``). Pure: no I/O (the logo file is checked when the report runs, on the
worker that reads it).
"""

from __future__ import annotations

import codecs
import string
from collections.abc import Mapping
from datetime import date
from typing import Any

from b2b_integrations.config.options import validated
from b2b_integrations.config.render_options import (
    LINE_TERMINATORS,
    CsvRender,
    PageRender,
    RenderChart,
    RenderColumn,
    RenderOptions,
    SummaryFigure,
    XlsxRender,
    XmlRender,
    xml_name,
)
from b2b_integrations.reports.spec import (
    FORMATS,
    ChartSpec,
    ColumnSpec,
    CsvOptions,
    PageOptions,
    ReportSpec,
    SummarySpec,
    XlsxOptions,
    XmlOptions,
)

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
_SAMPLE_DATE = date(2026, 1, 31)


def report_spec_from_config(
    report_format: str, render: Mapping[str, Any] | RenderOptions | None, *, default_title: str = "Report"
) -> ReportSpec:
    """Check ``render`` (the step's ``render:`` mapping) and return the spec; ValueError names the key."""
    if report_format not in FORMATS:
        raise ValueError(f"format: expected one of {list(FORMATS)}, got {report_format!r}")
    options = validated(RenderOptions, render or {}, "render")
    columns = tuple(_column(c) for c in options.columns or ())
    currencies = {c.name: c.currency for c in columns if c.currency is not None}
    xml = _xml(options.xml or XmlRender())
    if report_format == "xml":
        _check_xml_columns(columns, xml)
    return ReportSpec(
        format=report_format,
        title=options.title or default_title,
        columns=columns,
        summary=_summary(options.summary, currencies),
        chart=_chart(options.chart) if options.chart is not None else None,
        logo=options.logo,
        csv=_csv(options.csv or CsvRender()),
        xml=xml,
        xlsx=_xlsx(options.xlsx or XlsxRender()),
        page=_page(options.page or PageRender()),
    )


def default_title(report: str) -> str:
    """A report's title when the config gives none: its identifier in words (monthly_invoices -> Monthly
    invoices)."""
    return report.replace("_", " ").capitalize()


def check_xml_name(name: str, key: str) -> str:
    """An XML element name (no namespace prefix, not starting with 'xml'), or ValueError naming the key."""
    try:
        return str(xml_name(name))
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None


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


def _column(column: RenderColumn) -> ColumnSpec:
    return ColumnSpec(
        name=column.name,
        label=column.label or column.name,
        type=column.type,
        decimals=column.decimals,
        date_format=column.date_format,
        width=float(column.width) if column.width is not None else None,
        currency=column.currency,
    )


def _summary(figures: list[SummaryFigure] | None, currencies: Mapping[str, str]) -> tuple[SummarySpec, ...]:
    if figures is None:
        return (SummarySpec(label="Rows", op="count"),)
    specs = []
    for figure in figures:
        op, column = figure.op or "count", figure.column
        specs.append(
            SummarySpec(
                label=figure.label or ("Rows" if column is None else f"{op.capitalize()} of {column}"),
                op=op,
                column=column,
                decimals=figure.decimals,
                # Counting rows is the same whatever their currency; any other figure is money per currency.
                currency=currencies.get(column) if column is not None and op != "count" else None,
            )
        )
    labels = [f.label for f in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"render.summary: label(s) {duplicates} used more than once")
    return tuple(specs)


def _chart(chart: RenderChart) -> ChartSpec:
    kind = chart.type or "bar"
    op = chart.op or ("sum" if chart.value else "count")
    what = "Rows" if op == "count" else f"{op.capitalize()} of {chart.value}"
    return ChartSpec(
        type=kind,
        category=chart.category,
        value=chart.value,
        op=op,
        title=chart.title or f"{what} by {chart.category}",
        max_categories=chart.max_categories or (60 if kind == "line" else 12),
        sort=chart.sort or ("category" if kind == "line" else "value"),
    )


def _csv(csv: CsvRender) -> CsvOptions:
    defaults = CsvOptions()
    quoting = csv.quoting or defaults.quoting
    escapechar = csv.escapechar
    if escapechar is None and quoting == "none":
        escapechar = "\\"  # without one, a value holding the delimiter could not be written at all
    return CsvOptions(
        delimiter=csv.delimiter or defaults.delimiter,
        quotechar=csv.quotechar or defaults.quotechar,
        quoting=quoting,
        escapechar=escapechar,
        lineterminator=LINE_TERMINATORS[csv.lineterminator]
        if csv.lineterminator
        else defaults.lineterminator,
        encoding=codecs.lookup(csv.encoding).name if csv.encoding else codecs.lookup(defaults.encoding).name,
        header=defaults.header if csv.header is None else csv.header,
        date_format=csv.date_format or defaults.date_format,
        datetime_format=csv.datetime_format,
        decimals=csv.decimals,
        decimal=csv.decimal or defaults.decimal,
    )


def _xml(xml: XmlRender) -> XmlOptions:
    defaults = XmlOptions()
    return XmlOptions(
        root=xml.root or defaults.root,
        record=xml.record or defaults.record,
        elements=dict(xml.elements),
        nulls=xml.nulls or defaults.nulls,
    )


def _check_xml_columns(columns: tuple[ColumnSpec, ...], xml: XmlOptions) -> None:
    for index, column in enumerate(columns):
        if column.name not in xml.elements:
            check_xml_name(column.name, f"render.columns[{index}] (map it in render.xml.elements)")


def _xlsx(xlsx: XlsxRender) -> XlsxOptions:
    defaults = XlsxOptions()
    return XlsxOptions(
        sheet=xlsx.sheet or defaults.sheet,
        header=defaults.header if xlsx.header is None else xlsx.header,
        column_widths={name: float(width) for name, width in xlsx.column_widths.items()},
        freeze_header=defaults.freeze_header if xlsx.freeze_header is None else xlsx.freeze_header,
        date_format=xlsx.date_format or defaults.date_format,
        datetime_format=xlsx.datetime_format or defaults.datetime_format,
    )


def _page(page: PageRender) -> PageOptions:
    defaults = PageOptions()
    return PageOptions(
        size=page.size or defaults.size,
        orientation=page.orientation or defaults.orientation,
        font_size=float(page.font_size) if page.font_size is not None else defaults.font_size,
        zebra=defaults.zebra if page.zebra is None else page.zebra,
    )
