"""Summary figures and chart aggregates, accumulated chunk by chunk (the rows are never all in memory)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from b2b_integrations.reports.errors import ReportDataError
from b2b_integrations.reports.spec import ChartSpec, ReportSpec, SummarySpec
from b2b_integrations.reports.values import NUMERIC_KINDS, text_values

if TYPE_CHECKING:
    import pandas as pd

MAX_CHART_GROUPS = 10_000  # distinct categories kept while reading; more means the category is too fine
# Figures kept per currency: the PDF shows every one on its first page (two columns of twelve lines).
MAX_SUMMARY_LINES = 24
OTHER = "Other"
BLANK = "(blank)"


@dataclass
class _Totals:
    count: int = 0
    total: float | int = 0
    low: Any = None
    high: Any = None


@dataclass
class _Figure:
    spec: SummarySpec
    kind: str | None = None
    parts: dict[str | None, _Totals] = field(default_factory=dict)
    """Totals per currency code; one entry (None) for a figure without a currency."""


class SummaryAccumulator:
    """The report's summary figures, updated with each prepared chunk.

    A figure over a money column (declared with its currency column) is kept per currency, so no value
    ever adds up amounts in different currencies.
    """

    def __init__(self, figures: tuple[SummarySpec, ...]) -> None:
        self.figures = [_Figure(spec) for spec in figures]

    def add(self, frame: pd.DataFrame, kinds: dict[str, str]) -> None:
        """Fold one prepared chunk into every figure."""
        for figure in self.figures:
            spec = figure.spec
            if spec.column is None:
                figure.parts.setdefault(None, _Totals()).count += len(frame)
                continue
            series = _column(frame, spec.column, f"summary {spec.label!r}")
            kind = kinds[spec.column]
            if kind != "empty":
                figure.kind = figure.kind or kind
            if spec.op in ("sum", "avg") and kind not in NUMERIC_KINDS and kind != "empty":
                raise ReportDataError(
                    f"summary {spec.label!r}: {spec.op} needs numbers, but column {spec.column!r} holds "
                    f"{kind} values"
                )
            if spec.currency is None:
                _fold(figure.parts.setdefault(None, _Totals()), series, spec.op, kind)
                continue
            codes = _column(frame, spec.currency, f"summary {spec.label!r} (its currency column)")
            labels = text_values(codes, kinds[spec.currency]).str.strip().replace("", BLANK)
            for code, part in series.groupby(labels, sort=False):
                _fold(figure.parts.setdefault(str(code), _Totals()), part, spec.op, kind)
            self._check_lines()

    def _check_lines(self) -> None:
        lines = sum(max(len(figure.parts), 1) for figure in self.figures)
        if lines > MAX_SUMMARY_LINES:
            counted = {f.spec.label: sorted(map(str, f.parts)) for f in self.figures if f.spec.currency}
            raise ReportDataError(
                f"summary: more than {MAX_SUMMARY_LINES} figures once kept per currency ({counted}); "
                "list fewer money figures or select fewer currencies in the query"
            )

    def values(self) -> dict[str, Any]:
        """label -> JSON-safe value (numbers rounded to the figure's decimals, dates as ISO strings); a
        figure kept per currency gives ``{currency code: value}``."""
        out: dict[str, Any] = {}
        for figure in self.figures:
            if figure.spec.currency is None:
                out[figure.spec.label] = _json_safe(self._value(figure, None), figure)
            else:
                out[figure.spec.label] = {
                    code: _json_safe(self._value(figure, code), figure) for code in _codes(figure)
                }
        return out

    def display(self) -> list[tuple[str, str]]:
        """(label, text) for the PDF, formatted like the report's cells; one line per currency."""
        lines = []
        for figure in self.figures:
            label = figure.spec.label
            if figure.spec.currency is None:
                lines.append((label, _display(self._value(figure, None), figure)))
            elif not figure.parts:
                lines.append((label, _display(None, figure)))
            else:
                lines.extend(
                    (f"{label} ({code})", _display(self._value(figure, code), figure))
                    for code in _codes(figure)
                )
        return lines

    @staticmethod
    def _value(figure: _Figure, code: str | None) -> Any:
        op = figure.spec.op
        totals = figure.parts.get(code) or _Totals()
        if op == "count":
            return totals.count
        if op == "sum":
            return totals.total
        if op == "avg":
            return totals.total / totals.count if totals.count else None
        return totals.low if op == "min" else totals.high


def _fold(totals: _Totals, series: pd.Series, op: str, kind: str) -> None:
    totals.count += int(series.notna().sum())
    if op in ("sum", "avg"):
        totals.total += _python(series.sum()) if kind != "empty" else 0
    elif op in ("min", "max") and kind != "empty":
        totals.low = _better(totals.low, _python(series.min()), min)
        totals.high = _better(totals.high, _python(series.max()), max)


def _codes(figure: _Figure) -> list[str]:
    return sorted(str(code) for code in figure.parts)


class ChartAccumulator:
    """Per-category sums and counts for the chart, kept for at most ``MAX_CHART_GROUPS`` categories."""

    def __init__(self, chart: ChartSpec, spec: ReportSpec) -> None:
        self.chart = chart
        column = spec.column(chart.category)
        self.date_format = column.date_format if column else None
        self.groups: dict[str, list[Any]] = {}  # label -> [sum, count, sort key]

    def add(self, frame: pd.DataFrame, kinds: dict[str, str]) -> None:
        """Fold one prepared chunk into the per-category aggregates."""
        import pandas as pd

        chart = self.chart
        raw = _column(frame, chart.category, "chart category")
        labels = text_values(raw, kinds[chart.category], date_format=self.date_format).replace("", BLANK)
        if chart.value is None:
            values = pd.Series(1, index=frame.index)
        else:
            values = _column(frame, chart.value, "chart value")
            if kinds[chart.value] not in NUMERIC_KINDS | {"empty"}:
                raise ReportDataError(
                    f"chart: {chart.op} needs numbers, but column {chart.value!r} holds {kinds[chart.value]} values"
                )
        grouped = pd.DataFrame({"label": labels, "value": values, "key": raw}).groupby("label", sort=False)
        stats = grouped.agg(total=("value", "sum"), count=("value", "count"), key=("key", "first"))
        for label, total, count, key in stats.itertuples(name=None):
            group = self.groups.get(label)
            if group is None:
                if len(self.groups) >= MAX_CHART_GROUPS:
                    raise ReportDataError(
                        f"chart: column {chart.category!r} has more than {MAX_CHART_GROUPS} distinct values; "
                        "chart a coarser column"
                    )
                self.groups[label] = [_python(total), int(count), _python(key)]
            else:
                group[0] += _python(total)
                group[1] += int(count)

    def points(self) -> list[tuple[str, float]]:
        """(label, value) in chart order, cut to ``max_categories`` (bar/pie: the rest as "Other")."""
        chart = self.chart
        items = [(label, total, count, key) for label, (total, count, key) in self.groups.items()]
        by_value = sorted(items, key=lambda item: -self._metric(item[1], item[2]))
        if len(items) > chart.max_categories:
            if chart.type == "line":
                items = self._by_category(items)[-chart.max_categories :]
            else:
                kept, rest = by_value[: chart.max_categories - 1], by_value[chart.max_categories - 1 :]
                other = (OTHER, sum(i[1] for i in rest), sum(i[2] for i in rest), None)
                items = [*kept, other]
                by_value = items
        ordered = (
            self._by_category(items) if chart.sort == "category" else [i for i in by_value if i in items]
        )
        return [(label, self._metric(total, count)) for label, total, count, _ in ordered]

    def _metric(self, total: float, count: int) -> float:
        if self.chart.op == "count":
            return float(count)
        if self.chart.op == "avg":
            return float(total) / count if count else 0.0
        return float(total)

    @staticmethod
    def _by_category(items: list[tuple[str, Any, int, Any]]) -> list[tuple[str, Any, int, Any]]:
        keyed = [i for i in items if i[3] is not None and i[0] != OTHER]
        try:
            ordered = sorted(keyed, key=lambda item: item[3])
        except TypeError:  # mixed types: fall back to the labels' order
            ordered = sorted(keyed, key=lambda item: item[0])
        return ordered + [i for i in items if i not in keyed]


def _column(frame: pd.DataFrame, name: str, what: str) -> pd.Series:
    if name not in frame.columns:
        raise ReportDataError(f"{what}: column {name!r} is not in the data; it has {list(frame.columns)}")
    return frame[name]


def _python(value: Any) -> Any:
    """numpy/pandas scalars as plain Python values; missing values as None."""
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") and not hasattr(value, "to_pydatetime") else value


def _better(current: Any, candidate: Any, pick: Any) -> Any:
    if candidate is None:
        return current
    return candidate if current is None else pick(current, candidate)


def _json_safe(value: Any, figure: _Figure) -> Any:
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if figure.kind == "date" else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return round(value, figure.spec.decimals) if figure.spec.decimals is not None else value
    return value


def _display(value: Any, figure: _Figure) -> str:
    safe = _json_safe(value, figure)
    if safe is None:
        return "–"
    if isinstance(safe, bool) or not isinstance(safe, int | float):
        return str(safe)
    decimals = figure.spec.decimals
    if isinstance(safe, int) and decimals is None:
        return f"{safe:,}"
    return f"{safe:,.{decimals if decimals is not None else 2}f}"
