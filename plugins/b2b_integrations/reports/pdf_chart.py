"""The PDF's chart: a ReportLab graphics drawing (bar, line or pie) of one aggregate per category."""

from __future__ import annotations

from typing import Any

from b2b_integrations.reports.spec import ChartSpec

PALETTE = (
    "#2f5d8a",
    "#e07b39",
    "#5a9e5a",
    "#c44e52",
    "#8172b2",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
)
_LABEL_CHARS = 18


def short_number(value: float) -> str:
    """Axis labels: 950, 1.2k, 3.4M."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def chart_drawing(
    chart: ChartSpec, points: list[tuple[str, float]], width: float, height: float, font: str, bold: str
) -> Any:
    """A Drawing of ``width`` x ``height`` points with the chart's title; None when nothing can be drawn
    (no points, or a pie without a positive value)."""
    from reportlab.graphics.shapes import Drawing, String

    if chart.type == "pie":
        points = [(label, value) for label, value in points if value > 0]
    if not points:
        return None
    drawing = Drawing(width, height, initialFontName=font)
    drawing.add(String(0, height - 11, chart.title, fontName=bold, fontSize=10))
    plot_height = height - 22
    if chart.type == "pie":
        _pie(drawing, points, width, plot_height, font)
    else:
        _axes_chart(drawing, chart.type, points, width, plot_height, font)
    return drawing


def _axes_chart(
    drawing: Any, kind: str, points: list[tuple[str, float]], width: float, height: float, font: str
) -> None:
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.charts.linecharts import HorizontalLineChart
    from reportlab.graphics.widgets.markers import makeMarker
    from reportlab.lib import colors

    plot = VerticalBarChart() if kind == "bar" else HorizontalLineChart()
    labels = [_short(label) for label, _ in points]
    values = [value for _, value in points]
    slanted = len(points) > 6 or max(len(label) for label in labels) > 10
    bottom = 48 if slanted else 18
    plot.x, plot.y = 42, bottom
    plot.width, plot.height = width - 52, height - bottom - 6
    plot.data = [values]
    axis = plot.categoryAxis
    axis.categoryNames = labels
    axis.labels.fontName, axis.labels.fontSize = font, 7
    if slanted:
        axis.labels.angle, axis.labels.boxAnchor, axis.labels.dy = 40, "ne", -2
    plot.valueAxis.labels.fontName, plot.valueAxis.labels.fontSize = font, 7
    plot.valueAxis.labelTextFormat = short_number
    plot.valueAxis.valueMin = min(0.0, min(values))
    if max(values) == min(values) == 0:
        plot.valueAxis.valueMax = 1
    color = colors.HexColor(PALETTE[0])
    if kind == "bar":
        plot.bars[0].fillColor, plot.bars[0].strokeColor = color, color
    else:
        plot.lines[0].strokeColor, plot.lines[0].strokeWidth = color, 1.5
        if len(points) <= 40:
            plot.lines[0].symbol = makeMarker("FilledCircle", size=3)
    drawing.add(plot)


def _pie(drawing: Any, points: list[tuple[str, float]], width: float, height: float, font: str) -> None:
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.charts.piecharts import Pie
    from reportlab.lib import colors

    size = min(height - 8, width / 2)
    pie = Pie()
    pie.x, pie.y, pie.width, pie.height = 8, (height - size) / 2, size, size
    pie.data = [value for _, value in points]
    pie.labels = None
    total = sum(pie.data)
    pairs = []
    for index, (label, value) in enumerate(points):
        color = colors.HexColor(PALETTE[index % len(PALETTE)])
        pie.slices[index].fillColor = color
        pie.slices[index].strokeColor = colors.white
        pairs.append((color, f"{_short(label)}  {short_number(value)} ({100 * value / total:.0f}%)"))
    legend = Legend()
    legend.x, legend.y = size + 30, height - 6
    legend.fontName, legend.fontSize = font, 8
    legend.alignment = "right"
    legend.columnMaximum = max(1, int((height - 6) // 12))
    legend.deltay = 12
    legend.colorNamePairs = pairs
    drawing.add(pie)
    drawing.add(legend)


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"
