"""The fast path of the file import: CSV/TSV parsed and validated a column at a time with Apache Arrow.

Reading and checking a million-row CSV record by record costs about 5 s of Python; Arrow's CSV reader and
compute kernels do the same in about 1 s. The record path (``readers`` + ``validation``) stays the single
source of truth for what a valid record is, and the fast path only ever says "yes" where it would:

* each field's vectorised check is deliberately narrower than :func:`~.validation.validate_record`
  (canonical integers, plain decimals of at most 15 digits, ISO dates ...). A row that any check does not
  accept is a *suspect*: it goes, as a :class:`~.readers.RawRecord`, through the record path, which loads
  it or quarantines it with every reason, exactly as if the whole file had taken that path;
* anything the fast path cannot mirror exactly (a row with the wrong number of columns, bytes that are not
  valid in the encoding, a header Arrow reads differently, ``extra_fields: reject`` with undeclared columns)
  raises :class:`FastPathUnavailable` and the caller re-reads the whole file on the record path.

Good rows leave as CSV text for PostgreSQL ``COPY`` (``NULL`` = unquoted empty field), with the values as
they were in the file after trimming, and the record number last so the loader keeps file order.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from b2b_integrations.formats.readers import (
    FileParseError,
    FormatOptions,
    RawRecord,
    _column_names,
    _decoded_lines,
    _is_utf8,
    _non_blank_rows,
    _serialise_row,
)
from b2b_integrations.formats.validation import (
    FieldRule,
    RowSchema,
    date_format_pattern,
    separated_number_pattern,
)

# Arrow reads this much of the file per batch (~4k rows); more buys little speed and costs memory.
_BLOCK_BYTES = 512 * 1024
_INTEGER = r"^-?(0|[1-9][0-9]{0,17})$"  # canonical: the text is exactly str(int(text))
# At most 15 significant digits, so float(text) keeps the value exactly (the record path loads a float).
_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
_NUMBER_MAX_CHARS = 16
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATETIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
)
_TRUE = ["true", "yes", "1"]
_FALSE = ["false", "no", "0"]


class FastPathUnavailable(Exception):
    """This file must be read record by record (the message says why); nothing about it is wrong yet."""


@dataclass
class ColumnarBatch:
    """One slice of a file: the rows the vectorised checks accepted, and the ones they did not."""

    accepted_rows: Any
    """Arrow table of the accepted rows: output columns, then the record number."""
    suspects: list[RawRecord]
    """Rows for the record path to decide, in file order."""

    @property
    def accepted(self) -> int:
        return int(self.accepted_rows.num_rows)

    def csv(self, numbered: bool) -> bytes:
        """The accepted rows as CSV for ``COPY`` (NULL = unquoted empty field), with or without the
        record number as the last column."""
        import pyarrow as pa
        import pyarrow.csv as pcsv

        table = self.accepted_rows if numbered else self.accepted_rows.drop_columns(["number"])
        sink = pa.BufferOutputStream()
        pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
        return sink.getvalue().to_pybytes()


def fast_path_blocker(options: FormatOptions, schema: RowSchema) -> str | None:
    """Why this format/schema pair cannot take the fast path at all, or None if it can."""
    if options.format not in ("csv", "tsv"):
        return f"{options.format} files are read record by record"
    if not options.skip_blank_lines:
        return "skip_blank_lines is off"
    unsupported = [r.name for r in schema.fields if r.allowed is not None and r.type in ("date", "datetime")]
    if unsupported:
        return f"allowed values on date/datetime field(s) {unsupported}"
    formats = [
        f"{r.name} ({r.format})" for r in schema.fields if r.format and date_format_pattern(r.format) is None
    ]
    if formats:
        return f"the date format of field(s) {', '.join(formats)} uses directives besides %Y %m %d %H %M %S"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return "pyarrow is not installed"
    return None


def read_columnar(
    path: Path,
    options: FormatOptions,
    schema: RowSchema,
    constants: Sequence[Any] = (),
) -> Iterator[ColumnarBatch]:
    """Batches of ``path`` as read and checked by Arrow; output columns are the schema's fields in order,
    then ``constants`` (the same value on every row), then the record number.

    Raises :class:`FileParseError` for what the record path would also refuse as a whole file (no header,
    duplicate column names) and :class:`FastPathUnavailable` when the file needs the record path.
    """
    names, header_lines = _names_from_header(path, options)
    if schema.extra_fields == "reject" and set(names) - schema.declared:
        raise FastPathUnavailable("the file has undeclared columns and extra_fields is 'reject'")
    with path.open("rb") as source:
        yield from _read_checked(options, schema, constants, names, header_lines, source)


def _read_checked(
    options: FormatOptions,
    schema: RowSchema,
    constants: Sequence[Any],
    names: list[str],
    header_lines: int,
    source: BinaryIO,
) -> Iterator[ColumnarBatch]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    dialect = {"delimiter": options.effective_delimiter, "quotechar": options.quotechar}
    positional = [f"c{i}" for i in range(len(names))]
    try:
        reader = pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(
                block_size=_BLOCK_BYTES,
                use_threads=False,
                encoding="utf8" if _is_utf8(options.encoding) else options.encoding,
                # Our names, not Arrow's reading of the header (the csv module's is the reference).
                skip_rows=header_lines,
                column_names=positional,
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=dialect["delimiter"],
                quote_char=dialect["quotechar"],
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=True,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(positional, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise FastPathUnavailable(f"Arrow cannot read the file: {exc}") from None
    checker = _BatchChecker(schema, names, constants, dialect)
    numbered = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise FastPathUnavailable(f"Arrow cannot read past record {numbered}: {exc}") from None
        result, numbered = checker.check(batch, numbered, pa, pc)
        # Hand freed batch memory back now: the allocator otherwise keeps ~50 MB per file for reuse.
        pa.default_memory_pool().release_unused()
        if result is not None:
            yield result


def _names_from_header(path: Path, options: FormatOptions) -> tuple[list[str], int]:
    """Final column names as the record path has them, and how many lines to skip to the data."""
    if not options.header:
        return _column_names(path, None, options), 0
    lines = _decoded_lines(path, options.text_encoding)
    rows = _non_blank_rows(
        path,
        csv.reader(
            lines,
            delimiter=options.effective_delimiter,
            quotechar=options.quotechar,
        ),
        skip_blank=True,
    )
    first = next(rows, None)
    lines.close()  # only the header was needed: close the file now
    if first is None:
        raise FileParseError(f"{path.name}: missing header row (the file is empty)")
    line_number, row = first
    if any("\n" in name or "\r" in name for name in row):
        raise FastPathUnavailable("a header cell spans lines")
    return _column_names(path, [name.strip() for name in row], options), line_number


# Every character ``str.isspace()`` is true for, which ``str.strip()`` removes: the record path strips
# values with it. Written out because finding them takes 0.5 s (a scan of every code point) at the start
# of each file; tests/unit/test_columnar.py checks the list against that scan.
PYTHON_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class _BatchChecker:
    """Vectorised version of ``validate_record`` for one file's columns (see the module docstring)."""

    def __init__(
        self, schema: RowSchema, names: list[str], constants: Sequence[Any], dialect: dict[str, str]
    ) -> None:
        self.schema = schema
        self.names = names
        self.position = {name: i for i, name in enumerate(names)}
        self.constants = [_constant_text(v) for v in constants]
        self.dialect = dialect

    def check(self, batch: Any, numbered: int, pa: Any, pc: Any) -> tuple[ColumnarBatch | None, int]:
        raw = [batch.column(i) for i in range(batch.num_columns)]
        trimmed = [pc.utf8_trim(col, characters=PYTHON_WHITESPACE) for col in raw]
        lengths = [pc.utf8_length(col) for col in trimmed]
        # A blank row is blank in its first column: most batches have none, and need no other column looked at.
        blank = pc.equal(lengths[0], 0) if lengths else None
        if blank is not None and pc.any(blank).as_py():
            blank = _all_of(pc, [blank, *(pc.equal(length, 0) for length in lengths[1:])])
        if blank is not None and pc.any(blank).as_py():
            keep = pc.invert(blank)
            raw = [col.filter(keep) for col in raw]
            trimmed = [col.filter(keep) for col in trimmed]
            lengths = [length.filter(keep) for length in lengths]
        rows = len(raw[0]) if raw else 0
        if rows == 0:
            return None, numbered
        numbers = pa.array(range(numbered + 1, numbered + rows + 1), pa.int64())
        ok = pa.array([True] * rows)
        out: list[Any] = []
        for rule in self.schema.fields:
            at = self.position.get(rule.name)
            if at is None:
                value, present = pa.nulls(rows, pa.string()), pa.array([False] * rows)
            else:
                value, present = trimmed[at], pc.greater(lengths[at], 0)
            text, valid = _check_field(rule, value, present, pa, pc)
            if rule.required:
                valid = pc.and_(valid, present)
            ok = pc.and_(ok, valid)
            out.append(pc.if_else(present, text, pa.scalar(None, pa.string())))
        suspects = self._suspects(pc.invert(ok), raw, numbers, pc)
        columns = [*out, *(pa.array([c] * rows, pa.string()) for c in self.constants), numbers]
        names = [f"o{i}" for i in range(len(columns) - 1)] + ["number"]
        return ColumnarBatch(pa.table(columns, names=names).filter(ok), suspects), numbered + rows

    def _suspects(self, bad: Any, raw: list[Any], numbers: Any, pc: Any) -> list[RawRecord]:
        if not pc.any(bad).as_py():
            return []
        columns = [col.filter(bad).to_pylist() for col in raw]
        records = []
        for i, number in enumerate(numbers.filter(bad).to_pylist()):
            row = [col[i] for col in columns]
            records.append(
                RawRecord(
                    number,
                    partial(_serialise_row, row, {**self.dialect, "quoting": csv.QUOTE_MINIMAL}),
                    dict(zip(self.names, row, strict=True)),
                )
            )
        return records


def _all_of(pc: Any, masks: list[Any]) -> Any:
    result = None
    for mask in masks:
        result = mask if result is None else pc.and_(result, mask)
    return result


def _check_field(rule: FieldRule, value: Any, present: Any, pa: Any, pc: Any) -> tuple[Any, Any]:
    """(text to load, mask of rows whose value is absent or surely valid) for one field."""
    text = value
    if rule.type == "string":
        valid = _string_checks(rule, value, pa, pc)
    elif rule.type == "integer":
        text, written = _plain_number(rule, value, pc)
        valid = _both(pc, written, pc.match_substring_regex(text, _INTEGER))
        if rule.allowed is not None:
            as_int = pc.cast(pc.if_else(valid, text, pa.scalar(None, pa.string())), pa.int64())
            valid = pc.and_(valid, pc.is_in(as_int, pa.array(rule.allowed, pa.int64())))
    elif rule.type == "number":
        text, written = _plain_number(rule, value, pc)
        valid = _both(
            pc,
            written,
            pc.and_(
                pc.match_substring_regex(text, _NUMBER),
                pc.less_equal(pc.utf8_length(text), _NUMBER_MAX_CHARS),
            ),
        )
        if rule.allowed is not None:
            as_float = pc.cast(pc.if_else(valid, text, pa.scalar(None, pa.string())), pa.float64())
            valid = pc.and_(valid, pc.is_in(as_float, pa.array(rule.allowed, pa.float64())))
    elif rule.type == "boolean":
        lower = pc.utf8_lower(value)
        truthy = pc.is_in(lower, pa.array(_TRUE))
        valid = pc.or_(truthy, pc.is_in(lower, pa.array(_FALSE)))
        if rule.allowed is not None:
            valid = pc.and_(valid, pc.is_in(truthy, pa.array(rule.allowed, pa.bool_())))
        text = pc.if_else(truthy, "t", "f")  # what the record path's bool becomes in COPY
    elif rule.format is not None:
        text, valid = _formatted_date(rule, value, pa, pc)
    elif rule.type == "date":
        valid = pc.and_(pc.match_substring_regex(value, _DATE), _real_date(value, pa, pc))
    else:  # datetime
        valid = pc.and_(
            pc.match_substring_regex(value, _DATETIME),
            _real_date(pc.utf8_slice_codeunits(value, 0, 10), pa, pc),
        )
    # An absent value is valid here (the caller checks required); fill_null: absent values give nulls.
    return text, pc.or_(pc.invert(present), pc.fill_null(valid, False))


def _both(pc: Any, first: Any, second: Any) -> Any:
    return second if first is None else pc.and_(first, second)


def _plain_number(rule: FieldRule, value: Any, pc: Any) -> tuple[Any, Any]:
    """The texts with "." as the decimal point and no thousands separator, and the mask of the texts
    written as the rule's separators say (None: the rule has none, the texts are already plain)."""
    if not rule.separated:
        return value, None
    decimal, thousands = rule.decimal_separator or ".", rule.thousands_separator
    # The record path's own pattern (RE2 reads it the same, its \d being narrower: ASCII digits only).
    pattern = separated_number_pattern(decimal, thousands, rule.type == "integer")
    written = pc.match_substring_regex(value, f"^{pattern}$")
    plain = pc.replace_substring(value, thousands, "") if thousands else value
    if decimal != ".":
        plain = pc.replace_substring(plain, decimal, ".")
    return plain, written


def _formatted_date(rule: FieldRule, value: Any, pa: Any, pc: Any) -> tuple[Any, Any]:
    """(ISO text to load, mask of real dates) for a date/datetime field with a format."""
    pattern = date_format_pattern(rule.format or "")
    assert pattern is not None  # fast_path_blocker sent other formats to the record path
    # strptime also reads "3.12.2026" for %d.%m.%Y: such rows do not match and go as suspects.
    found = pc.extract_regex(value, f"^{pattern}$")
    names = {found.type.field(i).name for i in range(found.type.num_fields)}

    def part(name: str) -> Any:
        return pc.struct_field(found, name) if name in names else pa.scalar("00")

    day = pc.binary_join_element_wise(part("Y"), "-", part("m"), "-", part("d"), "")
    valid = pc.and_(pc.is_valid(found), _real_date(day, pa, pc))
    if rule.type == "date":
        return day, valid
    moment = pc.binary_join_element_wise(day, " ", part("H"), ":", part("M"), ":", part("S"), "")
    return moment, valid


def _string_checks(rule: FieldRule, value: Any, pa: Any, pc: Any) -> Any:
    valid = pa.array([True] * len(value))
    if rule.max_length is not None:
        valid = pc.and_(valid, pc.less_equal(pc.utf8_length(value), rule.max_length))
    if rule.allowed is not None:
        valid = pc.and_(valid, pc.is_in(value, pa.array([str(a) for a in rule.allowed], pa.string())))
    if rule.pattern is not None:
        # Python's re, not Arrow's RE2: the two dialects differ, and the pattern is written for re.
        import re

        match = re.compile(rule.pattern).fullmatch
        valid = pc.and_(valid, pa.array([v is None or match(v) is not None for v in value.to_pylist()]))
    return valid


def _real_date(value: Any, pa: Any, pc: Any) -> Any:
    """YYYY-MM-DD texts that name a real day of year 1 or later (``date.fromisoformat`` accepts them)."""
    parsed = pc.strptime(value, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2024-02-30 over to March 1st: the day of month it kept proves the day exists (a day
    # over 31 or a month over 12 it refuses). Cheaper than a strftime round trip (0.9 s of 3 s per 1M rows).
    kept_day = pc.utf8_lpad(pc.cast(pc.day(parsed), pa.string()), 2, "0")
    same = pc.equal(kept_day, pc.utf8_slice_codeunits(value, 8, 10))
    return pc.and_(pc.fill_null(same, False), pc.invert(pc.starts_with(value, "0000")))


def _constant_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float):
        return repr(value)
    raise FastPathUnavailable(f"constant {value!r} is not a string, number or boolean")
