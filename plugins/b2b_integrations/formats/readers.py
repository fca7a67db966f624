"""Stream records out of a local file (CSV, TSV, JSON, NDJSON, XML, Excel) one at a time.

The SFTP import downloads each remote file to a local temp file and then calls :func:`read_records`.
Readers never hold the whole file in memory, except ``json`` (see :func:`_read_json`). Two kinds of
failure are kept apart so the caller can quarantine bad rows and still load the good ones:

* one record cannot be parsed -> a :class:`RawRecord` with ``error`` set, reading goes on;
* the file as a whole cannot be parsed -> :class:`FileParseError`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any
from xml.parsers import expat

from b2b_integrations.config.format_options import FileFormat
from b2b_integrations.config.format_options import is_utf8 as _is_utf8
from b2b_integrations.config.options import validated

# How to read a file is the step's validated ``format`` block: one model, checked at config time and here.
FormatOptions = FileFormat

# Binary read size for the line splitter and the XML prescan: big enough to be fast, small enough
# that memory stays flat whatever the file size.
_CHUNK = 64 * 1024
_DECODE_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class RawRecord:
    """One record as read from the file, before any validation."""

    number: int
    """1-based data record number within the file (header and skipped blank lines not counted)."""
    raw_source: str | Callable[[], str]
    """Original text of the record, or how to make it: only quarantined records ever need it, and
    re-serialising every CSV row up front cost as much as parsing it."""
    fields: dict[str, Any]
    """Column -> value as read (strings for CSV/TSV, JSON types, Excel cell values; XML as nested
    dicts and lists of text, see :func:`_xml_element`)."""
    error: str | None = None
    """Why this single record could not be parsed; the caller quarantines it and goes on."""

    @property
    def raw(self) -> str:
        """Original text of the record, for quarantine reports."""
        return self.raw_source if isinstance(self.raw_source, str) else self.raw_source()


class FileParseError(Exception):
    """The whole file cannot be parsed (bad encoding, not XML, missing sheet or header, ...)."""


def options_from_dict(data: dict[str, Any]) -> FormatOptions:
    """The resolved ``format`` block, checked by its config model; ``ValueError`` with a clear message."""
    return validated(FormatOptions, data)


def read_records(path: Path, options: FormatOptions) -> Iterator[RawRecord]:
    """Yield the records of the local file ``path`` lazily, in file order.

    Raises :class:`FileParseError` (while iterating) when the file as a whole cannot be read.
    """
    readers = {
        "csv": _read_delimited,
        "tsv": _read_delimited,
        "json": _read_json,
        "ndjson": _read_ndjson,
        "xml": _read_xml,
        "xlsx": _read_xlsx,
    }
    return readers[options.format](Path(path), options)


# --------------------------------------------------------------------------- shared helpers


def _decoded_lines(path: Path, encoding: str) -> Iterator[str]:
    """Yield text lines (keeping ``\\n``) decoded incrementally, naming the line of a decode error.

    Bytes are decoded in large blocks (per-line decoding was the slowest part of a CSV import); on a
    decode error the line number is recovered by counting the newlines before the bad byte. The
    incremental decoder copes with multi-byte sequences that straddle a block boundary.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    pending = ""
    lines_before = 0
    offset = 0
    with path.open("rb") as fh:
        while block := fh.read(_DECODE_BLOCK):
            buffered = len(decoder.getstate()[0])  # bytes of a sequence split by the previous block
            try:
                pending += decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad_at = max(exc.start - buffered, 0)
                # The lines before the bad byte are good: hand them out before failing.
                pending += decoder.decode(block[:bad_at])
                *complete, _ = pending.split("\n")
                yield from (line + "\n" for line in complete)
                line_no = lines_before + block[:bad_at].count(b"\n") + 1
                raise FileParseError(
                    f"{path.name}: cannot decode line {line_no} as {encoding} "
                    f"(byte offset {offset + bad_at}: {exc.reason})"
                ) from None
            offset += len(block)
            lines_before += block.count(b"\n")
            # Wide encodings (UTF-16) can end a block mid-line, so only hand out complete lines.
            *complete, pending = pending.split("\n")
            yield from (line + "\n" for line in complete)
        try:
            pending += decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise FileParseError(
                f"{path.name}: truncated {encoding} sequence at end of file ({exc.reason})"
            ) from None
    if pending:
        yield pending


def _column_names(path: Path, header_row: list[str] | None, options: FormatOptions) -> list[str]:
    """Final column names: header (or explicit ``columns``), then ``rename``; no duplicates."""
    if options.columns is not None:
        if header_row is not None and len(header_row) != len(options.columns):
            raise FileParseError(
                f"{path.name}: header has {len(header_row)} columns but {len(options.columns)} "
                f"column names are configured"
            )
        names = list(options.columns)
    else:
        names = list(header_row or [])
    names = [options.rename.get(name, name) for name in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FileParseError(f"{path.name}: duplicate column name(s) {duplicates}")
    return names


def _rename_keys(data: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
    return {rename.get(key, key): value for key, value in data.items()} if rename else dict(data)


def _to_json(value: Any) -> str:
    # default=str so Excel dates/times and Decimals still produce a readable quarantine line.
    return json.dumps(value, ensure_ascii=False, default=str)


# --------------------------------------------------------------------------- CSV / TSV


def _read_delimited(path: Path, options: FormatOptions) -> Iterator[RawRecord]:
    dialect = {
        "delimiter": options.effective_delimiter,
        "quotechar": options.quotechar,
        # QUOTE_MINIMAL re-serialises a row the way most exporters write it, for the raw text.
        "quoting": csv.QUOTE_MINIMAL,
    }
    reader = csv.reader(_decoded_lines(path, options.text_encoding), **dialect)
    rows = _non_blank_rows(path, reader, options.skip_blank_lines)
    header_row = None
    if options.header:
        first = next(rows, None)
        if first is None:
            raise FileParseError(f"{path.name}: missing header row (the file is empty)")
        header_row = [name.strip() for name in first[1]]
    names = _column_names(path, header_row, options)
    for number, (_, row) in enumerate(rows, start=1):
        raw = partial(_serialise_row, row, dialect)
        if len(row) != len(names):
            error = f"expected {len(names)} columns, got {len(row)}"
            yield RawRecord(number, raw, dict(zip(names, row, strict=False)), error)
        else:
            yield RawRecord(number, raw, dict(zip(names, row, strict=True)))


def _non_blank_rows(path: Path, reader: Any, skip_blank: bool) -> Iterator[tuple[int, list[str]]]:
    """(line number, row) pairs; csv errors become :class:`FileParseError` with the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileParseError(f"{path.name}: CSV error at line {reader.line_num}: {exc}") from None
        if skip_blank and not any(cell.strip() for cell in row):
            continue
        yield reader.line_num, row


def _serialise_row(row: list[str], dialect: dict[str, Any]) -> str:
    buffer = io.StringIO()
    # The terminator must contain \r\n: QUOTE_MINIMAL only quotes embedded newlines it knows about.
    csv.writer(buffer, lineterminator="\r\n", **dialect).writerow(row)
    return buffer.getvalue().removesuffix("\r\n")


# --------------------------------------------------------------------------- JSON / NDJSON


def _read_json(path: Path, options: FormatOptions) -> Iterator[RawRecord]:
    """Records of a JSON document.

    Limit: the document is loaded whole with ``json.load`` (the stdlib has no streaming parser),
    so keep ``.json`` files to what fits comfortably in memory; use NDJSON for large feeds.
    """
    try:
        with path.open(encoding=options.text_encoding) as fh:
            document = json.load(fh, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise FileParseError(f"{path.name}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise FileParseError(
            f"{path.name}: cannot decode as {options.encoding} at byte {exc.start}"
        ) from None
    except json.JSONDecodeError as exc:
        raise FileParseError(
            f"{path.name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    items = _follow_record_path(path, document, options.record_path)
    for number, item in enumerate(items, start=1):
        yield _json_record(number, _to_json(item), item, options.rename)


class _DuplicateKey(ValueError):
    """An object names a key twice; plain ``json`` would keep the last value and drop the first."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # About 7% on parsing: the price of never dropping a value silently, as the XML reader never does.
    data = dict(pairs)
    if len(data) != len(pairs):
        repeated = next(key for key, count in Counter(k for k, _ in pairs).items() if count > 1)
        raise _DuplicateKey(f"an object has the key {repeated!r} twice (one value would be lost)")
    return data


def _follow_record_path(path: Path, document: Any, record_path: str | None) -> list[Any]:
    target = document
    walked: list[str] = []
    keys = record_path.split(".") if record_path else []
    for key in keys:
        walked.append(key)
        if not isinstance(target, dict) or key not in target:
            raise FileParseError(f"{path.name}: record_path {record_path!r}: no key {'.'.join(walked)!r}")
        target = target[key]
    if not isinstance(target, list):
        where = f"record_path {record_path!r}" if record_path else "the top level (set record_path?)"
        raise FileParseError(f"{path.name}: expected an array at {where}, got {type(target).__name__}")
    return target


def _json_record(number: int, raw: str, item: Any, rename: dict[str, str]) -> RawRecord:
    if not isinstance(item, dict):
        return RawRecord(number, raw, {}, f"record is not a JSON object (got {_json_type(item)})")
    return RawRecord(number, raw, _rename_keys(item, rename))


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _read_ndjson(path: Path, options: FormatOptions) -> Iterator[RawRecord]:
    number = 0
    for line in _decoded_lines(path, options.text_encoding):
        text = line.rstrip("\r\n")
        if options.skip_blank_lines and not text.strip():
            continue
        number += 1
        try:
            item = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            yield RawRecord(number, text, {}, f"invalid JSON at column {exc.colno}: {exc.msg}")
            continue
        except _DuplicateKey as exc:
            yield RawRecord(number, text, {}, str(exc))
            continue
        yield _json_record(number, text, item, options.rename)


# --------------------------------------------------------------------------- XML


class _StopScan(Exception):
    """Raised from expat handlers to end the prolog scan early."""


def _reject_doctype(path: Path, encoding: str | None) -> None:
    """Refuse documents with a DOCTYPE, which is where entity-expansion attacks live.

    ``defusedxml`` is not available, so the prolog is scanned with expat up to the root element
    (a DOCTYPE can only appear before it); this reads just the first few bytes of a normal file.
    """
    parser = expat.ParserCreate(encoding)

    def on_doctype(*_: Any) -> None:
        raise FileParseError(f"{path.name}: DOCTYPE not allowed (line {parser.CurrentLineNumber})")

    def on_root(*_: Any) -> None:
        raise _StopScan

    parser.StartDoctypeDeclHandler = on_doctype
    parser.StartElementHandler = on_root
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except _StopScan:
        return
    except expat.ExpatError as exc:
        raise FileParseError(
            f"{path.name}: malformed XML at line {exc.lineno}, column {exc.offset}: "
            f"{expat.ErrorString(exc.code)}"
        ) from None


@dataclass
class _XmlPathState:
    """Book-keeping to tell "no records because the container is empty" from "wrong record_path"."""

    segments: list[str]
    parent_seen: bool = False
    parent_children: int = 0
    records: int = 0
    prefixes: dict[str, str] = field(default_factory=dict)
    """Namespace URI -> the first prefix the document declared for it ("" for a default namespace)."""


# Deeper than any business document (UBL nests about 10 levels) and far below Python's recursion limit,
# which a hostile file would otherwise reach: the same bound as the JSON bodies the endpoints accept.
XML_MAX_DEPTH = 64
XML_TEXT = "#text"
"""Key of an element's text when the element also has attributes or child elements."""
XML_ATTRIBUTE = "@"
"""Prefix of an attribute's key (``@currency``); a record element's own attributes go without it."""


@lru_cache(maxsize=4096)  # a file repeats a few dozen names a million times
def _local(tag: str) -> str:
    """Tag or attribute name without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def _read_xml(path: Path, options: FormatOptions) -> Iterator[RawRecord]:
    # UTF-8 is XML's default: let the document's declaration / BOM decide; otherwise force the codec.
    encoding = None if _is_utf8(options.encoding) else options.encoding
    _reject_doctype(path, encoding)
    parser = ET.XMLParser(encoding=encoding)
    state = _XmlPathState(segments=[s for s in (options.record_path or "").strip("/").split("/") if s])
    try:
        yield from _iter_xml_records(path, parser, state, options.rename)
    except ET.ParseError as exc:
        line, column = exc.position
        raise FileParseError(
            f"{path.name}: malformed XML at line {line}, column {column}: {exc.msg}"
        ) from None
    except _XmlLossError as exc:
        raise FileParseError(f"{path.name}: record {state.records}: {exc}") from None
    if state.records == 0 and (not state.parent_seen or state.parent_children > 0):
        raise FileParseError(f"{path.name}: no element matches record_path {options.record_path!r}")


def _iter_xml_records(
    path: Path, parser: ET.XMLParser, state: _XmlPathState, rename: dict[str, str]
) -> Iterator[RawRecord]:
    with path.open("rb") as fh:  # own the handle so an abandoned generator still closes it
        events = ET.iterparse(fh, events=("start-ns", "start", "end"), parser=parser)
        yield from _walk_xml(events, state, rename)


def _walk_xml(
    events: Iterator[tuple[str, Any]], state: _XmlPathState, rename: dict[str, str]
) -> Iterator[RawRecord]:
    stack: list[ET.Element] = []  # open elements, root first, down to the current record element
    names: list[str] = []  # their local names, minus the root
    in_record = False
    below = 0  # levels open below the record element: they stay attached until the record is done
    for event, elem in events:
        if event == "start-ns":
            prefix, uri = elem
            state.prefixes.setdefault(uri, prefix)
            continue
        if in_record and (below or event == "start"):
            # Inside a record nothing needs book-keeping (most events of a file are here).
            below += 1 if event == "start" else -1
            continue
        if event == "start":
            if not stack:
                _resolve_root(state, _local(elem.tag))
            else:
                names.append(_local(elem.tag))
                _note_xml_child(state, names)
                in_record = names == state.segments
            stack.append(elem)
            continue
        stack.pop()
        if in_record:
            in_record = False
            state.records += 1
            yield _xml_record(state.records, elem, rename, state.prefixes)
        if stack:
            # Finished with this element: detach it so the tree does not grow with the file.
            stack[-1].remove(elem)
        if names:
            names.pop()


def _resolve_root(state: _XmlPathState, root: str) -> None:
    """Accept a path written with the root element first ("orders/order" for ``<orders>``)."""
    if len(state.segments) > 1 and state.segments[0] == root:
        state.segments = state.segments[1:]
    if len(state.segments) == 1:
        state.parent_seen = True


def _note_xml_child(state: _XmlPathState, names: list[str]) -> None:
    parent = state.segments[:-1]
    if names == parent:
        state.parent_seen = True
    elif len(names) == len(state.segments) and names[:-1] == parent:
        state.parent_children += 1


class _XmlLossError(Exception):
    """The record holds something the field mapping cannot carry; the file fails rather than lose it."""


def _xml_record(number: int, elem: ET.Element, rename: dict[str, str], prefixes: dict[str, str]) -> RawRecord:
    """The record element as nested fields, nothing dropped (see :func:`_xml_element`).

    Its own attributes are plain fields (``<order id="1">`` gives ``id``), as they were before nesting
    existed; one that shares its name with a child element keeps the ``@`` (both values stay).
    """
    elem.tail = None  # the text after the record is not part of it
    values = _xml_element(elem, prefixes, _local(elem.tag), depth=1)
    # Only quarantined records need their text: serialising every record cost a fifth of reading it.
    raw = partial(ET.tostring, elem, encoding="unicode")
    if not isinstance(values, dict):  # a leaf record, e.g. <sku>A-1</sku>
        values = {XML_TEXT: values}
    plain = {}
    for key, value in values.items():
        name = key[1:] if key.startswith(XML_ATTRIBUTE) and key[1:] not in values else key
        plain[name] = value
    return RawRecord(number, raw, _rename_keys(_nested_renames(plain, rename), rename))


def _nested_renames(values: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
    """Values of ``rename`` sources written as dotted paths (``address.city``: the name nested elements
    had before records nested) copied up, so configurations written then keep their columns."""
    for source in rename:
        if "." not in source or source in values:
            continue
        value: Any = values
        for part in source.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            values[source] = value
    return values


def _xml_element(elem: ET.Element, prefixes: dict[str, str], where: str, depth: int) -> Any:
    """One element as a JSON-like value, losslessly.

    A leaf without attributes is its text (``""`` when empty). Otherwise a dict: attributes as
    ``@name``, child elements by name (a repeated name collects a list, in document order), and the
    element's text as ``#text``. Names are local (no namespace) unless two in one element share a
    local name across namespaces: those are written ``prefix:name`` with the document's prefix.
    Text in more than one place between child elements (mixed content) has no lossless place in
    such a mapping, so it fails the file.
    """
    if depth > XML_MAX_DEPTH:
        raise _XmlLossError(f"elements nest deeper than {XML_MAX_DEPTH} levels at {where}")
    children = list(elem)
    if not children and not elem.attrib:
        return elem.text or ""
    out: dict[str, Any] = {}
    attribute_names = _xml_names(list(elem.attrib), prefixes)
    for attribute, value in elem.attrib.items():
        out[XML_ATTRIBUTE + attribute_names[attribute]] = value
    child_names = _xml_names([child.tag for child in children], prefixes)
    for child in children:
        name = child_names[child.tag]
        if not len(child) and not child.attrib:  # a plain leaf, most elements: no call, no path string
            value: Any = child.text or ""
        else:
            value = _xml_element(child, prefixes, f"{where}/{name}", depth + 1)
        if name not in out:
            out[name] = value
        elif isinstance(out[name], list):  # an element's value is never a list: this is a repeat
            out[name].append(value)
        else:
            out[name] = [out[name], value]
    texts = [t for t in (elem.text, *(child.tail for child in children)) if t and t.strip()]
    if not children and elem.text:
        texts = [elem.text]  # a leaf's text is its value, spaces included
    if len(texts) > 1:
        raise _XmlLossError(
            f"element {where} mixes text with child elements in {len(texts)} places (mixed content), "
            "which fields cannot hold without losing the order"
        )
    if texts:
        out[XML_TEXT] = texts[0]
    return out


def _xml_names(tags: list[str], prefixes: dict[str, str]) -> dict[str, str]:
    """Field name per distinct tag (or attribute name): local, unless another namespace has it too."""
    distinct = set(tags)
    names = {tag: _local(tag) for tag in distinct}
    if len(set(names.values())) == len(distinct):  # the usual case: no two share a local name
        return names
    by_local: dict[str, set[str]] = {}
    for tag in tags:
        by_local.setdefault(_local(tag), set()).add(tag)
    names = {}
    for local, group in by_local.items():
        if len(group) == 1:
            names[next(iter(group))] = local
            continue
        qualified = {tag: _qualified(tag, prefixes) for tag in group}
        if len(set(qualified.values())) < len(group):  # prefixes do not tell them apart: the URIs do
            qualified = {tag: tag for tag in group}
        names.update(qualified)
    return names


def _qualified(tag: str, prefixes: dict[str, str]) -> str:
    if not tag.startswith("{"):
        return _local(tag)
    uri, local = tag[1:].split("}", 1)
    prefix = prefixes.get(uri)
    if prefix is None:
        return tag
    return f"{prefix}:{local}" if prefix else local


# --------------------------------------------------------------------------- Excel


def _read_xlsx(path: Path, options: FormatOptions) -> Iterator[RawRecord]:
    import zipfile

    from openpyxl import load_workbook  # heavy: imported only when an Excel file is read
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise FileParseError(f"{path.name}: not a readable .xlsx workbook ({exc})") from None
    try:
        sheet = _pick_sheet(path, workbook, options.sheet)
        yield from _sheet_records(path, sheet.iter_rows(values_only=True), options)
    finally:
        workbook.close()  # read-only workbooks keep the file handle open until closed


def _pick_sheet(path: Path, workbook: Any, sheet: str | int | None) -> Any:
    names = workbook.sheetnames
    if sheet is None:
        return workbook.worksheets[0]
    if isinstance(sheet, int):
        if sheet >= len(names):
            raise FileParseError(f"{path.name}: no sheet at index {sheet}; the workbook has {len(names)}")
        return workbook.worksheets[sheet]
    if sheet not in names:
        raise FileParseError(f"{path.name}: sheet {sheet!r} not found; available: {names}")
    return workbook[sheet]


def _sheet_records(
    path: Path, rows: Iterable[tuple[Any, ...]], options: FormatOptions
) -> Iterator[RawRecord]:
    # Fully empty rows are skipped: Excel users leave gaps, and read-only mode reports padded rows.
    rows = (list(row) for row in rows if any(_has_value(v) for v in row))
    header_row = None
    if options.header:
        first = next(rows, None)
        if first is None:
            raise FileParseError(f"{path.name}: missing header row (the sheet is empty)")
        header_row = _excel_header(path, first)
    names = _column_names(path, header_row, options)
    for number, row in enumerate(rows, start=1):
        # Trailing empty cells are padding, not data; short rows are padded with None.
        while len(row) > len(names) and not _has_value(row[-1]):
            row.pop()
        values = dict(zip(names, row + [None] * (len(names) - len(row)), strict=False))
        error = f"expected {len(names)} columns, got {len(row)}" if len(row) > len(names) else None
        yield RawRecord(number, _to_json(row if error else values), values, error)


def _has_value(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _excel_header(path: Path, row: list[Any]) -> list[str]:
    while row and not _has_value(row[-1]):
        row.pop()
    names = [str(v).strip() if _has_value(v) else "" for v in row]
    if "" in names:
        raise FileParseError(f"{path.name}: empty header cell in column {names.index('') + 1}")
    return names
