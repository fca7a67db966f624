"""Report writers (no servers): every format parsed back, empty results, config and period rules."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.planner import plan_project
from b2b_integrations.reports.aggregate import MAX_CHART_GROUPS, ChartAccumulator
from b2b_integrations.reports.config import check_file_name, format_file_name, report_spec_from_config
from b2b_integrations.reports.errors import ReportDataError
from b2b_integrations.reports.period import period_label, report_period
from b2b_integrations.reports.query import check_parameters, sql_chunks
from b2b_integrations.reports.render import render_report
from b2b_integrations.reports.spec import ReportMeta
from b2b_integrations.reports.xlsx_writer import write_xlsx
from helpers import minimal_customer, write_include

UTC = dt.UTC
NAMES = ["Zoë Müller", "Łukasz Gößling", "Øystein Ağaoğlu", "Amélie <&> \"Q\" 'S'", "Bob"]
META = ReportMeta(
    customer_name="Gößling & Søn Łódź",
    period_start=dt.datetime(2026, 11, 1, tzinfo=UTC),
    period_end=dt.datetime(2026, 12, 1, tzinfo=UTC),
    empty_note="No invoices were paid in this period.",
)
RENDER: dict[str, Any] = {
    "title": "Monthly invoices",
    "columns": [
        {"name": "invoice", "label": "Invoice"},
        {"name": "customer", "label": "Customer"},
        {"name": "paid_on", "label": "Paid on"},
        {"name": "amount", "label": "Amount", "decimals": 2},
        {"name": "items", "label": "Items"},
        {"name": "region", "label": "Region"},
    ],
    "summary": [
        {"label": "Invoices", "op": "count"},
        {"label": "Total amount", "op": "sum", "column": "amount", "decimals": 2},
        {"label": "Average amount", "op": "avg", "column": "amount", "decimals": 2},
        {"label": "Last payment", "op": "max", "column": "paid_on"},
    ],
    "chart": {"type": "bar", "category": "region", "value": "amount", "title": "Amount by region"},
}


def invoices(rows: int) -> pd.DataFrame:
    """Rows as a database gives them: date objects, floats, ints, text with markup and non-ASCII names."""
    index = np.arange(rows)
    return pd.DataFrame(
        {
            "invoice": [f"INV-{i:06d}" for i in index],
            "customer": [NAMES[i % len(NAMES)] for i in index],
            "paid_on": [dt.date(2026, 11, 1 + i % 30) for i in index],
            "amount": np.round((index * 1.37) % 1000 + 0.5, 2),
            "items": index % 7,
            "region": [("north", "south", "east")[i % 3] for i in index],
        }
    )


def chunked(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, max(len(frame), 1), size):
        yield frame.iloc[start : start + size]


def render(
    tmp_path: Path, fmt: str, frame: pd.DataFrame, options: dict[str, Any] | None = None, size: int = 7
):
    spec = report_spec_from_config(fmt, RENDER if options is None else options)
    return render_report(spec, chunked(frame, size), tmp_path / f"report.{fmt}", META)


# ------------------------------------------------------------------------------------------------ CSV


def test_csv_default_dialect_reads_back_with_pandas(tmp_path: Path) -> None:
    frame = invoices(50)
    result = render(tmp_path, "csv", frame)
    back = pd.read_csv(result.path, dtype=str, keep_default_na=False)
    assert list(back.columns) == ["Invoice", "Customer", "Paid on", "Amount", "Items", "Region"]
    assert back["Customer"].tolist() == frame["customer"].tolist()
    assert back["Paid on"].tolist() == [d.isoformat() for d in frame["paid_on"]]
    assert back["Amount"].tolist() == [f"{v:.2f}" for v in frame["amount"]]
    assert result.rows == 50 and result.chunks == 8
    assert result.summary == {
        "Invoices": 50,
        "Total amount": round(float(frame["amount"].sum()), 2),
        "Average amount": round(float(frame["amount"].mean()), 2),
        "Last payment": "2026-11-30",
    }
    assert result.bytes == Path(result.path).stat().st_size


@pytest.mark.parametrize(
    ("options", "dialect"),
    [
        (
            {
                "delimiter": ";",
                "quoting": "all",
                "lineterminator": "crlf",
                "decimal": ",",
                "date_format": "%d.%m.%Y",
            },
            {"delimiter": ";", "quoting": csv.QUOTE_ALL, "lineterminator": "\r\n"},
        ),
        ({"delimiter": "\t", "quotechar": "'", "quoting": "minimal"}, {"delimiter": "\t", "quotechar": "'"}),
        ({"quoting": "none", "escapechar": "\\"}, {"quoting": csv.QUOTE_NONE, "escapechar": "\\"}),
        ({"quoting": "nonnumeric", "encoding": "utf-8-sig"}, {"quoting": csv.QUOTE_NONNUMERIC}),
        ({"header": False, "encoding": "utf-16"}, {}),
    ],
    ids=[
        "semicolon-all-crlf-comma-decimal",
        "tab-single-quote",
        "no-quoting-escaped",
        "nonnumeric-bom",
        "no-header-utf16",
    ],
)
def test_csv_dialects_round_trip(tmp_path: Path, options: dict[str, Any], dialect: dict[str, Any]) -> None:
    frame = invoices(20)
    frame.loc[3, "customer"] = 'Semi;colon, comma\tand "quotes"\nnewline'
    result = render(tmp_path, "csv", frame, {**RENDER, "csv": options})
    encoding = options.get("encoding", "utf-8")
    raw = Path(result.path).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    text = raw.decode("utf-8-sig" if encoding == "utf-8-sig" else encoding)
    if "lineterminator" in dialect:
        assert text.count("\r\n") >= 21
    reader_options = {k: v for k, v in dialect.items() if k != "lineterminator"}
    if dialect.get("quoting") == csv.QUOTE_NONNUMERIC:
        reader_options["quoting"] = csv.QUOTE_MINIMAL  # read numbers back as text, to compare exactly
    rows = list(csv.reader(io.StringIO(text, newline=""), **reader_options))
    if options.get("header", True):
        assert rows.pop(0) == ["Invoice", "Customer", "Paid on", "Amount", "Items", "Region"]
    assert len(rows) == 20
    assert [r[1] for r in rows] == frame["customer"].tolist()
    date_format = options.get("date_format", "%Y-%m-%d")
    assert [r[2] for r in rows] == [d.strftime(date_format) for d in frame["paid_on"]]
    mark = options.get("decimal", ".")
    assert [r[3] for r in rows] == [f"{v:.2f}".replace(".", mark) for v in frame["amount"]]
    assert [r[4] for r in rows] == [str(v) for v in frame["items"]]
    if dialect.get("quoting") == csv.QUOTE_NONNUMERIC:
        first = text.splitlines()[1]
        assert first.startswith('"INV-000000","Zoë Müller"') and ",0," in first  # items is unquoted


def test_csv_is_the_same_whatever_the_chunking_and_types_stay_consistent(tmp_path: Path) -> None:
    frame = invoices(30)
    frame["paid_at"] = pd.to_datetime([f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:30:00Z" for i in range(30)])
    frame.loc[0:9, "paid_at"] = frame.loc[0:9, "paid_at"].dt.normalize()  # a whole chunk at midnight
    options = {k: v for k, v in RENDER.items() if k != "columns"}
    one = render(tmp_path / "one", "csv", frame, options, size=100)
    many = render(tmp_path / "many", "csv", frame, options, size=10)
    assert one.sha256 == many.sha256
    lines = Path(many.path).read_text().splitlines()
    assert lines[1].endswith(",2026-11-01T00:00:00Z") and lines[12].endswith(",2026-11-12T11:30:00Z")


def test_csv_datetimes_in_another_zone_are_written_in_utc_unless_a_format_is_given(tmp_path: Path) -> None:
    stamps = pd.to_datetime(["2026-11-03T10:15:00+01:00", None]).tz_convert("Europe/Berlin")
    frame = pd.DataFrame({"at": stamps, "day": [dt.date(2026, 11, 3), None]})
    default = render(tmp_path / "a", "csv", frame, {})
    assert Path(default.path).read_text().splitlines() == ["at,day", "2026-11-03T09:15:00Z,2026-11-03", ","]
    local = render(
        tmp_path / "b",
        "csv",
        frame,
        {"csv": {"datetime_format": "%d.%m.%Y %H:%M", "date_format": "%d.%m.%Y"}},
    )
    assert Path(local.path).read_text().splitlines() == ["at,day", "03.11.2026 10:15,03.11.2026", ","]


def test_csv_empty_result_is_the_header_only(tmp_path: Path) -> None:
    result = render(tmp_path, "csv", invoices(0))
    assert Path(result.path).read_text() == "Invoice,Customer,Paid on,Amount,Items,Region\n"
    assert result.rows == 0 and result.summary["Invoices"] == 0 and result.summary["Average amount"] is None
    spec = report_spec_from_config("csv", RENDER)
    no_chunks = render_report(spec, iter([]), tmp_path / "none.csv", META)
    assert Path(no_chunks.path).read_text() == "Invoice,Customer,Paid on,Amount,Items,Region\n"


def test_csv_value_the_encoding_cannot_hold_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(
        ReportDataError, match=r"'Ł' cannot be written in encoding 'iso8859-1'.*render.csv.encoding"
    ):
        render(tmp_path, "csv", invoices(5), {**RENDER, "csv": {"encoding": "latin-1"}})
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary file


# ------------------------------------------------------------------------------------------------ XML


def test_xml_escapes_values_and_maps_element_names(tmp_path: Path) -> None:
    frame = invoices(12)
    frame.loc[1, "customer"] = "a < b && c > d ]]> \"double\" 'single'\r\nline\x01end"
    frame.loc[2, "region"] = None
    frame.loc[4, "amount"] = np.nan
    options = {**RENDER, "xml": {"root": "Invoices", "record": "Invoice", "elements": {"paid_on": "PaidOn"}}}
    result = render(tmp_path, "xml", frame, options)
    root = ET.parse(result.path).getroot()
    assert root.tag == "Invoices" and len(root) == 12
    first = root[0]
    assert [child.tag for child in first] == ["invoice", "customer", "PaidOn", "amount", "items", "region"]
    assert first.findtext("customer") == "Zoë Müller" and first.findtext("PaidOn") == "2026-11-01"
    assert root[1].findtext("customer") == "a < b && c > d ]]> \"double\" 'single'\r\nline\ufffdend"
    assert root[3].findtext("customer") == NAMES[3]
    assert root[2].find("region") is not None and root[2].findtext("region") == ""  # nulls: empty element
    assert root[4].findtext("amount") == "" and root[5].findtext("amount") == f"{frame.loc[5, 'amount']:.2f}"


def test_xml_nulls_omitted_and_empty_result_is_the_root_alone(tmp_path: Path) -> None:
    frame = invoices(3)
    frame.loc[0, "region"] = None
    result = render(tmp_path, "xml", frame, {**RENDER, "xml": {"nulls": "omit"}})
    root = ET.parse(result.path).getroot()
    assert root[0].find("region") is None and root[1].findtext("region") == "south"
    empty = render(tmp_path / "e", "xml", invoices(0), {**RENDER, "xml": {"root": "Invoices"}})
    assert ET.parse(empty.path).getroot().tag == "Invoices" and len(ET.parse(empty.path).getroot()) == 0


def test_xml_column_that_is_no_element_name_must_be_mapped(tmp_path: Path) -> None:
    frame = invoices(2).rename(columns={"items": "item count"})
    options = {k: v for k, v in RENDER.items() if k not in ("columns", "summary", "chart")}
    with pytest.raises(
        ReportDataError, match=r"column 'item count'.*not a valid XML element name.*render.xml.elements"
    ):
        render(tmp_path, "xml", frame, options)
    mapped = render(tmp_path, "xml", frame, {**options, "xml": {"elements": {"item count": "ItemCount"}}})
    assert ET.parse(mapped.path).getroot()[1].findtext("ItemCount") == "1"


# ------------------------------------------------------------------------------------------------ xlsx


def test_xlsx_cells_are_typed(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    frame = invoices(10)
    frame["paid_at"] = pd.to_datetime(["2026-11-03T10:15:00+01:00"] * 10)
    frame["flag"] = [i % 2 == 0 for i in range(10)]
    frame.loc[2, "customer"] = '=HYPERLINK("http://x")'
    frame.loc[3, "items"] = None  # ints with a null become floats in pandas; they stay numbers
    options = {**RENDER, "columns": [*RENDER["columns"], "paid_at", "flag"], "xlsx": {"sheet": "Invoices"}}
    result = render(tmp_path, "xlsx", frame, options)
    sheet = load_workbook(result.path)["Invoices"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("Invoice", "Customer", "Paid on", "Amount", "Items", "Region", "paid_at", "flag")
    assert rows[1] == (
        "INV-000000", "Zoë Müller", dt.datetime(2026, 11, 1), 0.5, 0, "north", dt.datetime(2026, 11, 3, 9, 15), True,
    )  # fmt: skip
    assert rows[4][4] is None and rows[5][4] == 4
    assert rows[3][1] == '=HYPERLINK("http://x")'
    cells = list(sheet.iter_rows(min_row=2, max_row=4))
    assert cells[1][1].data_type == "s"  # text, not a formula
    assert cells[0][3].number_format == "#,##0.00" and cells[0][2].is_date and cells[0][6].is_date
    assert sheet["A1"].font.b


def test_xlsx_continues_on_a_new_sheet_past_the_row_limit(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from b2b_integrations.reports.stream import RowStream

    spec = report_spec_from_config(
        "xlsx", {**RENDER, "xlsx": {"sheet": "Data", "column_widths": {"customer": 30}}}
    )
    stream = RowStream(chunked(invoices(11), 4), spec)
    write_xlsx(stream, tmp_path / "r.xlsx", spec, rows_per_sheet=5)
    book = load_workbook(tmp_path / "r.xlsx")
    assert book.sheetnames == ["Data", "Data (2)", "Data (3)"]
    invoices_seen = []
    for sheet in book.worksheets:
        rows = list(sheet.iter_rows(values_only=True))
        assert rows[0][0] == "Invoice" and len(rows) <= 5
        invoices_seen += [r[0] for r in rows[1:]]
        assert sheet.column_dimensions["B"].width == 30
    assert invoices_seen == [f"INV-{i:06d}" for i in range(11)]


def test_xlsx_empty_result_is_the_header_row(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    result = render(tmp_path, "xlsx", invoices(0))
    rows = list(load_workbook(result.path).active.iter_rows(values_only=True))
    assert rows == [("Invoice", "Customer", "Paid on", "Amount", "Items", "Region")]


# ------------------------------------------------------------------------------------------------ PDF


def pdf_pages(path: str) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(path).pages]


def test_pdf_header_summary_pages_and_non_ascii_text(tmp_path: Path) -> None:
    frame = invoices(300)
    result = render(tmp_path, "pdf", frame, size=64)
    pages = pdf_pages(result.path)
    assert len(pages) >= 4
    first = pages[0]
    assert "Gößling & Søn Łódź" in first and "Monthly invoices" in first
    assert "Period: 2026-11-01 – 2026-11-30" in first
    total = float(frame["amount"].sum())
    assert re.search(rf"Total amount\s*{total:,.2f}", first)
    assert re.search(r"Invoices\s*300", first) and re.search(r"Last payment\s*2026-11-30", first)
    assert "Amount by region" in first and all(region in first for region in ("north", "south", "east"))
    for number, text in enumerate(pages, start=1):
        assert text.rstrip().endswith(f"Page {number} of {len(pages)}")
        assert "Invoice Customer Paid on Amount Items Region" in text  # the header row on every page
    listed = re.findall(r"INV-\d{6}", "".join(pages))
    assert listed == [f"INV-{i:06d}" for i in range(300)]  # every row once, in order, across pages
    body = "".join(pages)
    for name in ("Zoë Müller", "Łukasz Gößling", "Øystein Ağaoğlu", "Amélie <&> \"Q\" 'S'"):
        assert name in body
    assert result.summary["Total amount"] == round(total, 2)


def test_pdf_embeds_its_font_and_renders_the_same_bytes_twice(tmp_path: Path) -> None:
    from pypdf import PdfReader

    first = render(tmp_path / "a", "pdf", invoices(40))
    second = render(tmp_path / "b", "pdf", invoices(40))
    assert first.sha256 == second.sha256  # the same data renders to the same bytes (no dates, no ids)
    fonts = set()
    for page in PdfReader(first.path).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = font["/FontDescriptor"].get_object()
            assert "/FontFile2" in descriptor  # TrueType program embedded
            fonts.add(str(font["/BaseFont"]).split("+")[-1])
    assert fonts == {"DejaVuSans", "DejaVuSans-Bold"}


def test_pdf_empty_result_says_so_with_the_note(tmp_path: Path) -> None:
    result = render(tmp_path, "pdf", invoices(0))
    pages = pdf_pages(result.path)
    assert len(pages) == 1
    assert "No data for this period." in pages[0] and "No invoices were paid in this period." in pages[0]
    assert re.search(r"Invoices\s*0", pages[0]) and "Page 1 of 1" in pages[0]
    assert result.rows == 0


def test_pdf_long_text_is_cut_to_its_column_and_pie_chart_and_logo_drawn(tmp_path: Path) -> None:
    from PIL import Image
    from pypdf import PdfReader

    logo = tmp_path / "logo.png"
    Image.new("RGB", (300, 100), (200, 30, 30)).save(logo)
    frame = invoices(6)
    frame.loc[0, "customer"] = "Ä" * 400
    options = {**RENDER, "chart": {"type": "pie", "category": "region", "title": "Invoices per region"}}
    spec = report_spec_from_config("pdf", options)
    meta = ReportMeta(META.customer_name, META.period_start, META.period_end, logo_path=str(logo))
    result = render_report(spec, chunked(frame, 4), tmp_path / "r.pdf", meta)
    text = pdf_pages(result.path)[0]
    cut = re.search(r"(Ä+)…", text)
    assert cut is not None and 5 < len(cut.group(1)) < 100
    assert "Invoices per region" in text and re.search(r"north\s+2 \(33%\)", text)
    page = PdfReader(result.path).pages[0]
    images = [x for x in page["/Resources"]["/XObject"].values() if x.get_object()["/Subtype"] == "/Image"]
    assert len(images) == 1
    bad = ReportMeta(
        META.customer_name, META.period_start, META.period_end, logo_path=str(tmp_path / "x.png")
    )
    with pytest.raises(ReportDataError, match="render.logo: cannot read image"):
        render_report(spec, chunked(frame, 4), tmp_path / "r.pdf", bad)
    assert pdf_pages(result.path)[0] == text  # the failed run left the earlier file as it was


def test_pdf_too_many_columns_for_the_page_is_a_clear_error(tmp_path: Path) -> None:
    frame = pd.DataFrame({f"c{i}": [i] for i in range(40)})
    with pytest.raises(ReportDataError, match="40 columns do not fit.*landscape"):
        render(tmp_path, "pdf", frame, {"title": "Wide"})


# ----------------------------------------------------------------------------------- shared behaviour


def test_declared_types_are_enforced_with_row_and_column_in_the_error(tmp_path: Path) -> None:
    frame = pd.DataFrame({"sku": [f"S{i}" for i in range(10)], "qty": [str(i) for i in range(10)]})
    options = {
        "columns": ["sku", {"name": "qty", "type": "integer"}],
        "summary": [{"op": "sum", "column": "qty"}],
    }
    result = render(tmp_path, "csv", frame, options, size=4)
    assert result.summary == {"Sum of qty": 45}
    frame.loc[6, "qty"] = "7 pcs"
    with pytest.raises(ReportDataError, match=r"row 7, column 'qty': '7 pcs' is not a integer"):
        render(tmp_path, "csv", frame, options, size=4)
    with pytest.raises(ReportDataError, match=r"render.columns \['price'\] are not in the data"):
        render(tmp_path, "csv", frame, {"columns": ["sku", "price"]})


def test_staged_json_values_are_typed_by_declaration(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    frame = pd.DataFrame({"day": ["2026-11-02", "2026-11-03"], "ok": ["true", "no"], "n": ["1.5", ""]})
    options = {
        "columns": [
            {"name": "day", "type": "date"},
            {"name": "ok", "type": "boolean"},
            {"name": "n", "type": "number"},
        ]
    }
    result = render(tmp_path, "xlsx", frame, options)
    rows = list(load_workbook(result.path).active.iter_rows(values_only=True))
    assert rows[1:] == [(dt.datetime(2026, 11, 2), True, 1.5), (dt.datetime(2026, 11, 3), False, None)]


MONEY: dict[str, Any] = {
    "title": "Invoices",
    "columns": [
        "number",
        "status",
        "currency",
        {"name": "amount", "type": "number", "decimals": 2, "currency": "currency"},
    ],
    "summary": [
        {"label": "Invoices", "op": "count"},
        {"label": "Total amount", "op": "sum", "column": "amount", "decimals": 2},
        {"label": "Largest invoice", "op": "max", "column": "amount", "decimals": 2},
    ],
    "chart": {"type": "bar", "category": "currency", "value": "amount", "title": "Amount by currency"},
}


def money_rows(rows: int) -> pd.DataFrame:
    currencies = ["DKK", "GBP", "EUR", "USD", None]
    return pd.DataFrame(
        {
            "number": [f"INV-{i:04d}" for i in range(rows)],
            "status": [("paid", "open")[i % 2] for i in range(rows)],
            "currency": [currencies[i % len(currencies)] for i in range(rows)],
            "amount": [1000.0 + i for i in range(rows)],
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "pdf"])
def test_money_in_several_currencies_is_summed_per_currency(tmp_path: Path, fmt: str) -> None:
    frame = money_rows(23)
    result = render(tmp_path, fmt, frame, MONEY, size=4)
    by_code = frame.fillna({"currency": "(blank)"}).groupby("currency")["amount"]
    assert result.summary == {
        "Invoices": 23,
        "Total amount": {code: round(total, 2) for code, total in by_code.sum().items()},
        "Largest invoice": {code: high for code, high in by_code.max().items()},
    }
    assert set(result.summary["Total amount"]) == {"(blank)", "DKK", "EUR", "GBP", "USD"}
    if fmt == "pdf":
        first = pdf_pages(result.path)[0]
        for code, total in by_code.sum().items():
            assert re.search(rf"Total amount \({re.escape(code)}\)\s*{total:,.2f}", first)
        assert not re.search(r"Total amount\s*[0-9]", first)  # never one figure over every currency
        assert "Amount by currency" in first


def test_money_figures_keep_their_currency_through_an_empty_report(tmp_path: Path) -> None:
    result = render(tmp_path, "pdf", money_rows(0), MONEY)
    assert result.summary == {"Invoices": 0, "Total amount": {}, "Largest invoice": {}}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"chart": {"category": "status", "value": "amount"}},
            r"render.chart.value: 'amount' is money in the currencies of column 'currency', and a sum by "
            r"'status' would add different currencies together",
        ),
        (
            {"columns": ["number", {"name": "amount", "currency": "currency"}]},
            r"render.columns\[1\].currency: column 'currency' is not in render.columns",
        ),
        (
            {"columns": [{"name": "fx", "type": "number"}, {"name": "amount", "currency": "fx"}]},
            r"render.columns\[1\].currency: 'fx' must be the column of currency codes",
        ),
        (
            {"columns": ["currency", {"name": "day", "type": "date", "currency": "currency"}]},
            r"render.columns\[1\].currency: only number and integer columns are money",
        ),
    ],
)
def test_money_columns_are_checked_at_config_time(change: dict[str, Any], error: str) -> None:
    options = {**MONEY, "summary": [{"op": "count"}], **change}
    with pytest.raises(ValueError, match=error):
        report_spec_from_config("pdf", options)
    report_spec_from_config("pdf", {**options, "chart": {"category": "status"}, "columns": MONEY["columns"]})


def test_too_many_currencies_for_the_summary_is_a_clear_error(tmp_path: Path) -> None:
    frame = pd.DataFrame({"currency": [f"C{i:02d}" for i in range(30)], "amount": [1.0] * 30})
    options = {
        "columns": ["currency", {"name": "amount", "currency": "currency"}],
        "summary": [{"label": "Total", "op": "sum", "column": "amount"}],
    }
    with pytest.raises(ReportDataError, match=r"summary: more than 24 figures once kept per currency"):
        render(tmp_path, "csv", frame, options)


def test_a_failed_render_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    good = render(tmp_path, "csv", invoices(5))

    def broken() -> Iterator[pd.DataFrame]:
        yield invoices(3)
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="went away"):
        render_report(report_spec_from_config("csv", RENDER), broken(), good.path, META)
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]
    assert len(Path(good.path).read_text().splitlines()) == 6


def test_chart_aggregates_across_chunks_keep_the_largest_and_other() -> None:
    spec = report_spec_from_config(
        "pdf", {"chart": {"type": "bar", "category": "c", "value": "v", "max_categories": 3}}
    )
    assert spec.chart is not None
    chart = ChartAccumulator(spec.chart, spec)
    for values in ([("a", 5.0), ("b", 1.0)], [("a", 1.0), ("c", 3.0), ("d", 2.0)], [("e", 0.5)]):
        frame = pd.DataFrame(values, columns=["c", "v"])
        chart.add(frame, {"c": "string", "v": "number"})
    assert chart.points() == [("a", 6.0), ("c", 3.0), ("Other", 3.5)]
    line_spec = report_spec_from_config(
        "pdf", {"chart": {"type": "line", "category": "d", "max_categories": 2}}
    )
    assert line_spec.chart is not None
    line = ChartAccumulator(line_spec.chart, line_spec)
    days = pd.to_datetime(["2026-11-03", "2026-11-01", "2026-11-02", "2026-11-03"])
    line.add(pd.DataFrame({"d": days}), {"d": "datetime"})
    assert line.points() == [("2026-11-02T00:00:00", 1.0), ("2026-11-03T00:00:00", 2.0)]
    too_fine = pd.DataFrame({"c": [f"k{i}" for i in range(MAX_CHART_GROUPS + 1)], "v": 1.0})
    with pytest.raises(ReportDataError, match="more than 10000 distinct values"):
        ChartAccumulator(spec.chart, spec).add(too_fine, {"c": "string", "v": "number"})


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("render_options", "fmt", "error"),
    [
        ({"colour": "red"}, "pdf", r"render: unknown option\(s\) \['colour'\]"),
        ({}, "docx", r"format: expected one of \['pdf', 'csv', 'xml', 'xlsx'\], got 'docx'"),
        ({"title": ""}, "pdf", r"render.title: expected a non-empty string"),
        ({"columns": ["a", "a"]}, "csv", r"render.columns: column\(s\) \['a'\] listed more than once"),
        (
            {"columns": [{"name": "a", "decimals": 12}]},
            "csv",
            r"render.columns\[0\].decimals: expected a whole",
        ),
        ({"columns": [{"name": "a", "type": "money"}]}, "csv", r"render.columns\[0\].type: expected one of"),
        (
            {"columns": [{"name": "a", "date_format": "YYYY"}]},
            "csv",
            r"render.columns\[0\].date_format: .*no strftime",
        ),
        ({"summary": [{"op": "sum"}]}, "pdf", r"render.summary\[0\].column: op 'sum' needs the column"),
        (
            {"columns": ["a"], "summary": [{"op": "sum", "column": "b"}]},
            "pdf",
            r"render.summary\[0\].column: column 'b' is not in render.columns",
        ),
        (
            {"summary": [{"op": "count"}, {"op": "count"}]},
            "pdf",
            r"render.summary: label\(s\) \['Rows'\] used more than once",
        ),
        (
            {"chart": {"type": "radar", "category": "a"}},
            "pdf",
            r"render.chart.type: expected one of \['bar', 'line', 'pie'\]",
        ),
        (
            {"chart": {"category": "a", "op": "avg"}},
            "pdf",
            r"render.chart.value: op 'avg' needs the value column",
        ),
        ({"logo": "logo.svg"}, "pdf", r"render.logo: expected a .png/.jpg/.jpeg/.gif image"),
        ({"page": {"size": "B5"}}, "pdf", r"render.page.size: expected one of"),
        ({"page": {"font_size": 30}}, "pdf", r"render.page.font_size: expected a number from 5 to 14"),
        (
            {"csv": {"quoting": "some"}},
            "csv",
            r"render.csv.quoting: expected one of \['minimal', 'all', 'nonnumeric', 'none'\]",
        ),
        ({"csv": {"delimiter": ";;"}}, "csv", r"render.csv.delimiter: expected one character"),
        (
            {"csv": {"delimiter": "\n"}},
            "csv",
            r"render.csv.delimiter: expected one character \(not a line break\)",
        ),
        ({"csv": {"quotechar": ","}}, "csv", r"render.csv.quotechar: must differ from the delimiter"),
        ({"csv": {"encoding": "klingon"}}, "csv", r"render.csv.encoding: unknown encoding 'klingon'"),
        ({"csv": {"decimal": ","}}, "csv", r"render.csv.decimal: ',' is also the delimiter"),
        (
            {"csv": {"lineterminator": "\n\n"}},
            "csv",
            r"render.csv.lineterminator: expected one of lf, crlf, cr",
        ),
        ({"csv": {"header": "yes"}}, "csv", r"render.csv.header: expected true or false"),
        ({"xml": {"root": "1st"}}, "xml", r"render.xml.root: '1st' is not a valid XML element name"),
        (
            {"xml": {"root": "xmlReport"}},
            "xml",
            r"render.xml.root: 'xmlReport' is not a valid XML element name",
        ),
        ({"xml": {"record": "a:b"}}, "xml", r"render.xml.record: 'a:b' is not a valid XML element name"),
        (
            {"xml": {"elements": {"a": "x y"}}},
            "xml",
            r"render.xml.elements.a: 'x y' is not a valid XML element",
        ),
        (
            {"columns": ["unit price"]},
            "xml",
            r"render.columns\[0\] \(map it in render.xml.elements\): 'unit price'",
        ),
        ({"xlsx": {"sheet": "Q1/Q2"}}, "xlsx", r"render.xlsx.sheet: 'Q1/Q2' may not contain"),
        ({"xlsx": {"sheet": "x" * 26}}, "xlsx", r"render.xlsx.sheet: at most 25 characters"),
        (
            {"columns": ["a"], "xlsx": {"column_widths": {"b": 10}}},
            "xlsx",
            r"render.xlsx.column_widths: column 'b'",
        ),
    ],
)
def test_render_options_are_checked_with_the_key_in_the_message(
    render_options: dict[str, Any], fmt: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        report_spec_from_config(fmt, render_options)


def test_render_defaults() -> None:
    spec = report_spec_from_config("csv", None, default_title="Monthly invoices")
    assert spec.title == "Monthly invoices" and spec.columns == ()
    assert [(s.label, s.op) for s in spec.summary] == [("Rows", "count")]
    assert (spec.csv.delimiter, spec.csv.quoting, spec.csv.encoding, spec.csv.header) == (
        ",",
        "minimal",
        "utf-8",
        True,
    )
    none = report_spec_from_config("csv", {"csv": {"quoting": "none"}})
    assert none.csv.escapechar == "\\"


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{customer}_{nope}.pdf", r"unknown placeholder \{nope\}"),
        ("../{report}.pdf", r"not a safe file name"),
        ("reports/{report}.pdf", r"not a safe file name"),
        ("{period_start:%Y/%m}.pdf", r"not a safe file name"),
        (".{report}.pdf", r"not a safe file name"),
        ("{report!r}.pdf", r"conversions such as '!r' are not allowed"),
        ("{ds[0]}.pdf", r"unknown placeholder \{ds\[0\]\}"),
        ("{report}{", r"cannot fill"),
    ],
)
def test_file_name_templates_are_checked(template: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        check_file_name(template)


def test_file_name_filled_with_dates() -> None:
    check_file_name("{customer}_{report}_{period_start:%Y-%m}.{format}")
    values = {"customer": "acme", "report": "invoices", "period_start": dt.date(2026, 11, 1), "format": "pdf"}
    assert (
        format_file_name("{customer}_{report}_{period_start:%Y-%m}.{format}", values)
        == "acme_invoices_2026-11.pdf"
    )


# ------------------------------------------------------------------------------------------ period


def test_period_is_the_data_interval_or_the_last_full_calendar_unit() -> None:
    start, end = dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 12, 1, tzinfo=UTC)
    assert report_period("interval", start, end) == (start, end)
    with pytest.raises(ValueError, match="create_cron_data_intervals"):
        report_period("interval", end, end)
    with pytest.raises(ValueError, match="no data interval"):
        report_period("interval", None, None)
    assert report_period("interval", end, end, allow_point=True) == (end, end)  # a snapshot report
    run = dt.datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # CronTriggerTimetable: start == end == run time
    assert report_period("month", run, run) == (start, end)
    assert report_period("day", run, run) == (
        dt.datetime(2026, 11, 30, tzinfo=UTC),
        dt.datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert report_period("week", run, run)[0] == dt.datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    assert report_period("quarter", run, run) == (
        dt.datetime(2026, 7, 1, tzinfo=UTC),
        dt.datetime(2026, 10, 1, tzinfo=UTC),
    )
    assert report_period("year", run, run) == (
        dt.datetime(2025, 1, 1, tzinfo=UTC),
        dt.datetime(2026, 1, 1, tzinfo=UTC),
    )
    january = report_period("month", None, dt.datetime(2026, 1, 15, tzinfo=UTC))
    assert january == (dt.datetime(2025, 12, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC))
    # 23:30 UTC on 30 November is already 1 December in Berlin: November is complete there.
    berlin = report_period("month", None, dt.datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "Europe/Berlin")
    assert [d.isoformat() for d in berlin] == ["2026-11-01T00:00:00+01:00", "2026-12-01T00:00:00+01:00"]
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        report_period("month", None, run, "Mars/Olympus")


def test_period_label() -> None:
    assert period_label(META.period_start, META.period_end) == "2026-11-01 – 2026-11-30"
    day = dt.datetime(2026, 11, 3, tzinfo=UTC)
    assert period_label(day, day + dt.timedelta(days=1)) == "2026-11-03"
    assert period_label(day, day + dt.timedelta(hours=1)) == "2026-11-03 00:00 – 2026-11-03 01:00 UTC"
    assert period_label(day, day) == "2026-11-03 00:00 UTC"


# ------------------------------------------------------------------------------------------ SQL (SQLite)


def test_sql_chunks_bind_named_parameters_and_stream(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, region TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "eu" if i % 2 else "us") for i in range(25)])
    engine = create_engine(f"sqlite:///{db}")
    sql = "SELECT id, region FROM t WHERE region = :region ORDER BY id"
    chunks = list(sql_chunks(engine, sql, {"region": "eu", "unused": 1}, 5))
    assert [len(c) for c in chunks] == [5, 5, 2]
    assert pd.concat(chunks)["id"].tolist() == list(range(1, 25, 2))
    injected = list(sql_chunks(engine, sql, {"region": "eu' OR '1'='1"}, 5))
    assert sum(len(c) for c in injected) == 0 and list(injected[0].columns) == ["id", "region"]
    with pytest.raises(ReportDataError, match=r"SQL parameter\(s\) \[':region'\] have no value"):
        check_parameters(sql, {"other": 1})
    assert check_parameters("SELECT CAST(:a AS TEXT)::text", {"a": 1, "b": 2}) == {"a": 1}
    engine.dispose()


# ------------------------------------------------------------------------------------- the step kind


def _template(step: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "billing",
        "config": {"region": {"type": "string", "default": "eu"}},
        "connections": {"app_db": {"type": "postgres"}},
        "flows": {
            "monthly": {
                "trigger": {"type": "schedule", "schedule": "@monthly"},
                "steps": [step],
            }
        },
    }


REPORT_STEP: dict[str, Any] = {
    "id": "render",
    "kind": "report_export",
    "report": "monthly_invoices",
    "format": "pdf",
    "file_name": "{customer}_{report}_{period_start:%Y-%m}.pdf",
    "period": "month",
    "period_timezone": "Europe/Berlin",
    "source": {
        "connection": "app_db",
        "sql": "SELECT * FROM invoices WHERE customer_id = :customer_id AND region = :region "
        "AND paid_at >= :period_start AND paid_at < :period_end",
        "parameters": {"region": "${config.region}"},
        "chunk_rows": 1000,
    },
    "empty": "skip",
    "render": RENDER,
}


def test_report_export_step_plans_with_its_nested_connection_and_config_refs(tmp_path: Path) -> None:
    customer = minimal_customer(
        "acme", "billing", config={"region": "us"}, connections={"app_db": "acme_app"}
    )
    customer["name"] = "Acme Łódź"
    include = write_include(tmp_path / "include", {"billing": _template(REPORT_STEP)}, {"acme": customer})
    project = load_project(include)
    assert project.problems == [], [str(p) for p in project.problems]
    (plan,) = plan_project(project)
    assert plan.pattern == "scheduled_file_export"
    (task,) = plan.tasks
    assert task.operator == "b2b_integrations.operators.report_export.ReportExportOperator"
    args = task.arguments
    assert args["db_conn_id"] == "acme_app" and "connection" not in args["source"]
    assert args["source"]["parameters"] == {"region": "us"}
    assert args["config_refs"]["source"]["parameters"] == {"region": "${config.region}"}
    assert args["customer_name"] == "Acme Łódź" and args["report_format"] == "pdf"
    assert (args["report"], args["period"], args["empty"]) == ("monthly_invoices", "month", "skip")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"source": {**REPORT_STEP["source"], "connection": "crm"}}, r"unknown connection slot 'crm'"),
        (
            {"source": {**REPORT_STEP["source"], "sql": "SELECT :secret_sauce"}},
            r"source.sql uses \[':secret_sauce'\]",
        ),
        (
            {"source": {**REPORT_STEP["source"], "parameters": {"ds": "x"}}},
            r"source.parameters \['ds'\] are built-in",
        ),
        ({"file_name": "{client}.pdf"}, r"file_name: unknown placeholder \{client\}"),
        ({"file_name": "../{report}.pdf"}, r"not a safe file name"),
        ({"format": "docx"}, r"format"),
        ({"render": {"csv": {"quoting": "some"}}}, r"render.csv.quoting"),
        ({"period_timezone": "Berlin"}, r"unknown time zone 'Berlin'"),
        ({"empty": "maybe"}, r"empty"),
        ({"report": "Monthly Invoices"}, r"report"),
        (
            {"source": {**REPORT_STEP["source"], "parameters": {"region": "${config.nope}"}}},
            r"unknown config name",
        ),
    ],
)
def test_report_export_step_config_problems(tmp_path: Path, change: dict[str, Any], error: str) -> None:
    include = write_include(tmp_path / "include", {"billing": _template({**REPORT_STEP, **change})})
    messages = [str(p) for p in load_project(include).problems]
    assert any(re.search(error, m) for m in messages), messages
