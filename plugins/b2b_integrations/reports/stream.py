"""The chunk pipeline every writer reads: prepared chunks, with rows counted and the summary and chart
aggregates folded in on the way."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from b2b_integrations.reports.aggregate import ChartAccumulator, SummaryAccumulator
from b2b_integrations.reports.errors import ReportDataError
from b2b_integrations.reports.spec import ReportSpec
from b2b_integrations.reports.values import prepare_chunk

if TYPE_CHECKING:
    import pandas as pd

Progress = Callable[[int, int], None]
"""Called after each chunk with (rows so far, chunks so far)."""


class RowStream:
    """Iterate to get (prepared chunk, column kinds); afterwards ``rows``, ``columns``, ``kinds``, the
    summary and the chart aggregates describe everything that went through."""

    def __init__(
        self, chunks: Iterable[pd.DataFrame], spec: ReportSpec, progress: Progress | None = None
    ) -> None:
        self._chunks = chunks
        self.spec = spec
        self.progress = progress
        self.rows = 0
        self.chunks = 0
        self.columns: list[str] | None = None
        self.kinds: dict[str, str] = {}
        self.summary = SummaryAccumulator(spec.summary)
        self.chart = ChartAccumulator(spec.chart, spec) if spec.chart is not None else None

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, dict[str, str]]]:
        for chunk in self._chunks:
            frame, kinds = prepare_chunk(chunk, self.spec, self.rows + 1)
            names = list(frame.columns)
            if self.columns is None:
                self.columns = names
            elif names != self.columns:
                raise ReportDataError(
                    f"chunk {self.chunks + 1} has columns {names}, the first chunk had {self.columns}"
                )
            for name, kind in kinds.items():
                if self.kinds.get(name, "empty") == "empty":
                    self.kinds[name] = kind  # a column all null so far takes the type of its first values
            self.summary.add(frame, kinds)
            if self.chart is not None:
                self.chart.add(frame, kinds)
            self.rows += len(frame)
            self.chunks += 1
            if self.progress is not None:
                self.progress(self.rows, self.chunks)
            yield frame, kinds
        if self.columns is None:  # no chunk at all: the declared columns, if any
            self.columns = [c.name for c in self.spec.columns]
            self.kinds = {name: "empty" for name in self.columns}

    def labels(self) -> list[str]:
        """Heading of each column: its declared label, else its name."""
        return [(c.label if (c := self.spec.column(name)) else name) for name in self.columns or []]
