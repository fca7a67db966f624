"""XML: ``<root><record><element>value</element>...</record>...</root>``, written incrementally.

Element text is escaped like ``xml.sax.saxutils.escape`` (``&``, ``<``, ``>``), vectorised over a chunk's
column; carriage returns are written as ``&#13;`` so a parser gives them back, and characters XML 1.0 cannot
carry at all (control characters other than tab and line breaks) become U+FFFD.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from b2b_integrations.reports.config import check_xml_name
from b2b_integrations.reports.errors import ReportDataError
from b2b_integrations.reports.spec import ReportSpec
from b2b_integrations.reports.stream import RowStream
from b2b_integrations.reports.values import column_text

if TYPE_CHECKING:
    import pandas as pd

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def write_xml(stream: RowStream, path: Path, spec: ReportSpec) -> None:
    """Write the records of ``stream`` under the root element; an empty result is the root alone."""
    options = spec.xml
    elements: dict[str, str] | None = None
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<{options.root}>\n')
        for frame, kinds in stream:
            if elements is None:
                elements = _element_names(list(frame.columns), spec)
            if len(frame) and len(frame.columns):
                out.write("".join(_records(frame, kinds, spec, elements).tolist()))
        out.write(f"</{options.root}>\n")


def _element_names(columns: list[str], spec: ReportSpec) -> dict[str, str]:
    names = {}
    for column in columns:
        element = spec.xml.elements.get(column, column)
        try:
            names[column] = check_xml_name(element, f"column {column!r}")
        except ValueError as e:
            raise ReportDataError(f"{e}; map it to an element name in render.xml.elements") from None
    return names


def _records(
    frame: pd.DataFrame, kinds: dict[str, str], spec: ReportSpec, elements: dict[str, str]
) -> pd.Series:
    texts = column_text(frame, kinds, spec)
    record = spec.xml.record
    rows = None
    for name in frame.columns:
        element = elements[name]
        text = escape_text(texts[name])
        null = frame[name].isna()
        empty = "" if spec.xml.nulls == "omit" else f"<{element}/>"
        part = (f"<{element}>" + text + f"</{element}>").where(~null, empty)
        rows = part if rows is None else rows + part
    return f"  <{record}>" + rows + f"</{record}>\n"


def escape_text(text: pd.Series) -> pd.Series:
    """Escape a column of strings for XML element content."""
    text = text.str.replace("&", "&amp;", regex=False)
    text = text.str.replace("<", "&lt;", regex=False).str.replace(">", "&gt;", regex=False)
    text = text.str.replace("\r", "&#13;", regex=False)
    return text.str.replace(_NOT_XML, "\ufffd", regex=True)
