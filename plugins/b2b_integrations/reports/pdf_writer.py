"""PDF: header block, summary figures, an optional chart, then the table across as many pages as needed.

Decisions:
- **The summary and chart stand before the table**, but are only known after the last row. So the rows
  are formatted chunk by chunk and *spooled* (pickled lists of display strings) to a temporary file beside
  the output while the aggregates accumulate; the page is drawn from the spool afterwards. Memory holds
  one chunk, whatever the row count.
- **The table is drawn on the canvas, row by row, with one text object per page**, not as a platypus
  ``Table``: splitting one huge Table re-measures every remaining row at each page break (quadratic), and
  even page-sized Tables measure every cell. Fixed row heights make the page count known before drawing, so
  every footer says "Page i of n" in one pass. Cells never wrap: text wider than its column is cut with
  an ellipsis.
- Fonts are the vendored DejaVu Sans (``fonts.py``), embedded as subsets; the canvas is ``invariant`` so
  the same data renders to the same bytes (same sha256), which lets deliveries recognise a repeat.
"""

from __future__ import annotations

import math
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

from b2b_integrations.reports.errors import ReportDataError
from b2b_integrations.reports.fonts import register_fonts
from b2b_integrations.reports.pdf_chart import chart_drawing
from b2b_integrations.reports.period import period_label
from b2b_integrations.reports.spec import ReportMeta, ReportSpec
from b2b_integrations.reports.stream import RowStream
from b2b_integrations.reports.values import NUMERIC_KINDS, column_text

MARGIN = 36.0
FOOTER_SPACE = 24.0
PAD = 3.0
LOGO_BOX = (150.0, 54.0)
CHART_HEIGHT = 170.0
MAX_WEIGHT_CHARS = 40  # a column's natural width stops growing past this many characters
HEADER_FILL = "#dfe6ee"
ZEBRA_FILL = "#f3f5f8"
EMPTY_MESSAGE = "No data for this period."
# The widest ASCII glyph of DejaVu Sans is 1.0 em ('W', 'm', '@' are just under): an ASCII string of
# at most width / (size * 1.0) characters fits without measuring it.
_ASCII_EM = 1.0


@dataclass
class _Fonts:
    regular: str
    bold: str
    size: float


@dataclass
class _Table:
    """Column geometry: left edges, widths, alignment, and how many ASCII characters surely fit."""

    labels: list[str]
    lefts: list[float]
    widths: list[float]
    right: list[bool]
    safe_chars: list[int]

    @property
    def width(self) -> float:
        return sum(self.widths)


def write_pdf(stream: RowStream, path: Path, spec: ReportSpec, meta: ReportMeta) -> None:
    """Render the report to ``path`` (the caller makes it atomic)."""
    regular, bold = register_fonts()
    fonts = _Fonts(regular, bold, spec.page.font_size)
    with tempfile.TemporaryFile(dir=path.parent, prefix=".spool-") as spool:
        lengths = _spool(stream, spool, spec)
        spool.seek(0)
        _render(stream, spool, lengths, path, spec, meta, fonts)


def _spool(stream: RowStream, spool: IO[bytes], spec: ReportSpec) -> dict[str, int]:
    """Format every chunk to display strings and append them to the spool; return each column's
    longest text (for the column widths)."""
    lengths: dict[str, int] = {}
    for frame, kinds in stream:
        if not len(frame):
            continue
        texts = column_text(frame, kinds, spec)
        for name, text in texts.items():
            lengths[name] = max(lengths.get(name, 0), int(text.str.len().max()))
        rows = list(zip(*(texts[name].tolist() for name in frame.columns), strict=True))
        pickle.dump(rows, spool, protocol=pickle.HIGHEST_PROTOCOL)
    return lengths


def _spooled_rows(spool: IO[bytes]) -> Iterator[tuple[str, ...]]:
    while True:
        try:
            rows = pickle.load(spool)  # noqa: S301  (our own temporary file, written just before)
        except EOFError:
            return
        yield from rows


def _render(
    stream: RowStream,
    spool: IO[bytes],
    lengths: dict[str, int],
    path: Path,
    spec: ReportSpec,
    meta: ReportMeta,
    fonts: _Fonts,
) -> None:
    from reportlab.pdfgen.canvas import Canvas

    page_w, page_h = _page_size(spec)
    canvas = Canvas(str(path), pagesize=(page_w, page_h), invariant=1, initialFontName=fonts.regular)
    period = period_label(meta.period_start, meta.period_end)
    canvas.setTitle(f"{spec.title} – {meta.customer_name}")
    canvas.setAuthor(meta.customer_name)
    canvas.setSubject(f"{spec.title}, {period}")
    canvas.setCreator("b2b-integrations")
    footer = _Footer(canvas, fonts, page_w, f"{meta.customer_name} · {spec.title} · {period}")
    top, bottom = page_h - MARGIN, MARGIN + FOOTER_SPACE
    y = _heading(canvas, spec, meta, fonts, top, page_w, period)
    y = _summary(canvas, stream.summary.display(), fonts, y, page_w - 2 * MARGIN)
    if stream.chart is not None and stream.rows:
        y = _chart(canvas, stream, fonts, y, page_w - 2 * MARGIN)
    if not stream.rows:
        _empty(canvas, meta, fonts, y, page_w - 2 * MARGIN)
        footer.draw(1, 1)
        canvas.showPage()
        canvas.save()
        return
    table = _layout(stream, spec, lengths, fonts, page_w - 2 * MARGIN)
    row_h = fonts.size * 1.5
    first = int((y - bottom) // row_h) - 1
    first = first if first >= 3 else 0  # a table start of one or two rows under the chart looks lost
    per_page = int((top - bottom) // row_h) - 1
    pages = 1 + math.ceil(max(0, stream.rows - first) / per_page)
    if not first:  # the header block, summary and chart fill the first page
        footer.draw(1, pages)
        canvas.showPage()
    page, capacity, y_top = (1, first, y) if first else (2, per_page, top)
    rows = _spooled_rows(spool)
    while batch := list(islice(rows, capacity)):
        _table_page(canvas, table, batch, fonts, y_top, row_h, spec.page.zebra)
        footer.draw(page, pages)
        canvas.showPage()
        page, capacity, y_top = page + 1, per_page, top
    canvas.save()


def _page_size(spec: ReportSpec) -> tuple[float, float]:
    from reportlab.lib import pagesizes

    size = {"A4": pagesizes.A4, "A3": pagesizes.A3, "letter": pagesizes.LETTER, "legal": pagesizes.LEGAL}
    width, height = size[spec.page.size]
    return (height, width) if spec.page.orientation == "landscape" else (width, height)


class _Footer:
    def __init__(self, canvas: Any, fonts: _Fonts, page_w: float, text: str) -> None:
        self.canvas = canvas
        self.fonts = fonts
        self.page_w = page_w
        self.text = _fit(text, (page_w - 2 * MARGIN) * 0.75, fonts.regular, 7)

    def draw(self, page: int, pages: int) -> None:
        from reportlab.lib import colors

        canvas = self.canvas
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.setFont(self.fonts.regular, 7)
        canvas.drawString(MARGIN, MARGIN - 8, self.text)
        canvas.drawRightString(self.page_w - MARGIN, MARGIN - 8, f"Page {page} of {pages}")
        canvas.setFillColor(colors.black)


def _heading(
    canvas: Any, spec: ReportSpec, meta: ReportMeta, fonts: _Fonts, top: float, page_w: float, period: str
) -> float:
    """Logo (right), customer, title and period (left); returns the y below the block."""
    from reportlab.lib.utils import simpleSplit

    logo_w, logo_h = _logo(canvas, meta.logo_path, page_w, top) if meta.logo_path else (0.0, 0.0)
    text_w = page_w - 2 * MARGIN - (logo_w + 12 if logo_w else 0)
    y = top - 11
    canvas.setFont(fonts.bold, 11)
    canvas.drawString(MARGIN, y, _fit(meta.customer_name, text_w, fonts.bold, 11))
    lines = simpleSplit(spec.title, fonts.bold, 17, text_w) or [spec.title]
    if len(lines) > 2:
        lines = [lines[0], _fit(" ".join(lines[1:]), text_w, fonts.bold, 17)]
    canvas.setFont(fonts.bold, 17)
    for line in lines:
        y -= 22
        canvas.drawString(MARGIN, y, line)
    y -= 17
    canvas.setFont(fonts.regular, 10)
    canvas.drawString(MARGIN, y, _fit(f"Period: {period}", text_w, fonts.regular, 10))
    y = min(y - 10, top - logo_h - 6)
    canvas.setLineWidth(0.6)
    canvas.line(MARGIN, y, page_w - MARGIN, y)
    return y - 12


def _logo(canvas: Any, logo_path: str, page_w: float, top: float) -> tuple[float, float]:
    from reportlab.lib.utils import ImageReader

    try:
        image = ImageReader(logo_path)
        width, height = image.getSize()
    except Exception as e:  # PIL raises many types for a bad or missing image
        raise ReportDataError(f"render.logo: cannot read image {logo_path!r}: {type(e).__name__}") from None
    scale = min(LOGO_BOX[0] / width, LOGO_BOX[1] / height)
    w, h = width * scale, height * scale
    canvas.drawImage(image, page_w - MARGIN - w, top - h, w, h, mask="auto")
    return w, h


def _summary(canvas: Any, figures: list[tuple[str, str]], fonts: _Fonts, y: float, width: float) -> float:
    """Label/value lines (two columns past six figures); returns the y below them."""
    if not figures:
        return y
    canvas.setFont(fonts.bold, 10)
    canvas.drawString(MARGIN, y - 10, "Summary")
    y -= 26
    per_column = len(figures) if len(figures) <= 6 else math.ceil(len(figures) / 2)
    column_w = width if len(figures) <= 6 else width / 2
    value_w = min(160.0, column_w * 0.45)
    for index, (label, value) in enumerate(figures):
        x = MARGIN + (index // per_column) * column_w
        line_y = y - (index % per_column) * 13
        canvas.setFont(fonts.regular, 9)
        canvas.drawString(x, line_y, _fit(label, column_w - value_w - 24, fonts.regular, 9))
        canvas.setFont(fonts.bold, 9)
        canvas.drawRightString(x + column_w - 24, line_y, _fit(value, value_w, fonts.bold, 9))
    return y - per_column * 13 - 8


def _chart(canvas: Any, stream: RowStream, fonts: _Fonts, y: float, width: float) -> float:
    from reportlab.graphics import renderPDF

    assert stream.chart is not None
    drawing = chart_drawing(
        stream.chart.chart, stream.chart.points(), min(width, 480.0), CHART_HEIGHT, fonts.regular, fonts.bold
    )
    if drawing is None:
        return y
    renderPDF.draw(drawing, canvas, MARGIN, y - CHART_HEIGHT)
    return y - CHART_HEIGHT - 14


def _empty(canvas: Any, meta: ReportMeta, fonts: _Fonts, y: float, width: float) -> None:
    from reportlab.lib.utils import simpleSplit

    canvas.setFont(fonts.bold, 12)
    canvas.drawString(MARGIN, y - 14, EMPTY_MESSAGE)
    canvas.setFont(fonts.regular, 10)
    y -= 34
    for line in simpleSplit(meta.empty_note, fonts.regular, 10, width)[:20]:
        canvas.drawString(MARGIN, y, line)
        y -= 14


def _layout(
    stream: RowStream, spec: ReportSpec, lengths: dict[str, int], fonts: _Fonts, width: float
) -> _Table:
    """Column widths: the declared ``width`` as a relative share, else the longest text (capped)."""
    names = stream.columns or []
    labels = stream.labels()
    minimum = fonts.size * 3 + 2 * PAD
    if len(names) * minimum > width:
        raise ReportDataError(
            f"{len(names)} columns do not fit across the page; use render.page.orientation: landscape, "
            "a larger render.page.size, a smaller font_size, or fewer render.columns"
        )
    weights = []
    for name, label in zip(names, labels, strict=True):
        column = spec.column(name)
        natural = min(max(lengths.get(name, 0), len(label)), MAX_WEIGHT_CHARS) + 2
        weights.append(column.width if column and column.width else natural)
    total = sum(weights)
    widths = [max(minimum, width * w / total) for w in weights]
    scale = width / sum(widths)
    widths = [w * scale for w in widths]
    lefts = [MARGIN + sum(widths[:i]) for i in range(len(widths))]
    return _Table(
        labels=labels,
        lefts=lefts,
        widths=widths,
        right=[stream.kinds.get(name) in NUMERIC_KINDS for name in names],
        safe_chars=[int((w - 2 * PAD) // (fonts.size * _ASCII_EM)) for w in widths],
    )


def _table_page(
    canvas: Any,
    table: _Table,
    rows: list[tuple[str, ...]],
    fonts: _Fonts,
    y_top: float,
    row_h: float,
    zebra: bool,
) -> None:
    """The header row and ``rows`` below ``y_top``: shading first, then one text object on top."""
    from reportlab.lib import colors
    from reportlab.pdfbase import pdfmetrics

    x0, width = table.lefts[0], table.width
    canvas.setFillColor(colors.HexColor(HEADER_FILL))
    canvas.rect(x0, y_top - row_h, width, row_h, stroke=0, fill=1)
    if zebra:
        canvas.setFillColor(colors.HexColor(ZEBRA_FILL))
        for index in range(1, len(rows), 2):
            canvas.rect(x0, y_top - (index + 2) * row_h, width, row_h, stroke=0, fill=1)
    canvas.setFillColor(colors.black)
    canvas.setLineWidth(0.5)
    canvas.line(x0, y_top - row_h, x0 + width, y_top - row_h)
    canvas.line(x0, y_top - (len(rows) + 1) * row_h, x0 + width, y_top - (len(rows) + 1) * row_h)
    size = fonts.size
    baseline = row_h * 0.32
    text = canvas.beginText()
    text.setFont(fonts.bold, size)
    measure = pdfmetrics.getFont(fonts.bold).stringWidth
    _row(text, table, table.labels, y_top - row_h + baseline, size, measure)
    text.setFont(fonts.regular, size)
    measure = pdfmetrics.getFont(fonts.regular).stringWidth
    y = y_top - row_h + baseline
    for row in rows:
        y -= row_h
        _row(text, table, row, y, size, measure)
    canvas.drawText(text)


def _row(text: Any, table: _Table, cells: Any, y: float, size: float, measure: Any) -> None:
    # The hot loop of a large report: no per-cell measuring when an ASCII text surely fits.
    for index, cell in enumerate(cells):
        if not cell:
            continue
        available = table.widths[index] - 2 * PAD
        if len(cell) > table.safe_chars[index] or not cell.isascii():
            if measure(cell, size) > available:
                cell = _cut(cell, available, measure, size)
        if table.right[index]:
            x = table.lefts[index] + table.widths[index] - PAD - measure(cell, size)
        else:
            x = table.lefts[index] + PAD
        text.setTextOrigin(x, y)
        text.textOut(cell)


def _cut(cell: str, available: float, measure: Any, size: float) -> str:
    """The longest prefix that fits with an ellipsis (binary search on the measured width)."""
    low, high = 0, len(cell)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(cell[:middle] + "…", size) <= available:
            low = middle
        else:
            high = middle - 1
    return cell[:low] + "…"


def _fit(text: str, width: float, font: str, size: float) -> str:
    from reportlab.pdfbase import pdfmetrics

    measure = pdfmetrics.getFont(font).stringWidth
    return text if measure(text, size) <= width else _cut(text, width, measure, size)
