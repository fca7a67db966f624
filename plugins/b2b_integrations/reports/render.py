"""One entry point: chunks in, a report file out (atomically), and what was written."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from b2b_integrations.reports.spec import RenderResult, ReportMeta, ReportSpec
from b2b_integrations.reports.stream import Progress, RowStream

if TYPE_CHECKING:
    import pandas as pd

_BLOCK = 1 << 20


def render_report(
    spec: ReportSpec,
    chunks: Iterable[pd.DataFrame],
    path: str | os.PathLike[str],
    meta: ReportMeta,
    *,
    progress: Progress | None = None,
) -> RenderResult:
    """Write the report for ``chunks`` to ``path`` and return rows, bytes, sha256 and summary.

    The file is written under a temporary name in the same folder (``.<name>.tmp``: fixed, so a retry
    overwrites a killed run's leftover) and renamed over ``path`` only when complete, so a reader (or a
    delivery) never sees half a report and a re-run replaces the previous file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    stream = RowStream(chunks, spec, progress)
    try:
        _write(spec, stream, tmp, meta)
        size, digest = file_digest(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return RenderResult(
        path=str(target),
        rows=stream.rows,
        bytes=size,
        sha256=digest,
        summary=stream.summary.values(),
        chunks=stream.chunks,
    )


def _write(spec: ReportSpec, stream: RowStream, tmp: Path, meta: ReportMeta) -> None:
    if spec.format == "csv":
        from b2b_integrations.reports.csv_writer import write_csv

        write_csv(stream, tmp, spec)
    elif spec.format == "xml":
        from b2b_integrations.reports.xml_writer import write_xml

        write_xml(stream, tmp, spec)
    elif spec.format == "xlsx":
        from b2b_integrations.reports.xlsx_writer import write_xlsx

        write_xlsx(stream, tmp, spec)
    elif spec.format == "pdf":
        from b2b_integrations.reports.pdf_writer import write_pdf

        write_pdf(stream, tmp, spec, meta)
    else:
        raise ValueError(f"unknown report format {spec.format!r}")


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()
