"""The Arrow fast path must decide every row exactly as the record path does.

Each test reads one real file both ways: the record path (``read_records`` + ``validate_record``) and the
fast path (``read_columnar``, whose suspects go through ``validate_record``). Both must accept the same
records, quarantine the same ones with the same reasons, and the text the fast path loads for a value
must convert (with the record path's own converters) to the value the record path loads.
"""

from __future__ import annotations

import csv
import io
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.formats.columnar import (
    PYTHON_WHITESPACE,
    FastPathUnavailable,
    fast_path_blocker,
    read_columnar,
)
from b2b_integrations.formats.readers import FileParseError, options_from_dict, read_records
from b2b_integrations.formats.validation import convert_value, schema_from_dict, validate_record

SCHEMA = {
    "fields": [
        {"name": "id", "type": "string", "required": True, "pattern": r"O-\d+"},
        {"name": "qty", "type": "integer", "required": True},
        {"name": "price", "type": "number"},
        {"name": "paid", "type": "boolean"},
        {"name": "day", "type": "date"},
        {"name": "at", "type": "datetime"},
        {"name": "status", "type": "string", "allowed": ["new", "shipped"], "max_length": 7},
        {"name": "level", "type": "integer", "allowed": [1, 2, 3]},
    ]
}
HEADER = "id,qty,price,paid,day,at,status,level,extra"
GOOD = {
    "id": "O-1", "qty": "5", "price": "12.50", "paid": "true", "day": "2024-02-29",
    "at": "2024-02-29T23:59:59Z", "status": "new", "level": "1", "extra": "x",
}  # fmt: skip
# One odd value per row, so that no other check hides how the fast path treats it.
ODD_VALUES = {
    "id": [" O-2 ", "O-3\x1c", "\u00a0O-4", "x-5", "", "O-6\u3000"],
    "qty": [" 7 ", "+5", "007", "-0", "99999999999999999999", "١٢", "1.0", "", "\u00a04\u00a0"],
    "price": ["3.0", "1e3", "0.1234567890123456789", "-0.5", ".5", "5.", "", '"1,5"', "123456789012345"],
    "paid": ["YES", "1", "No", "FALSE", "maybe", "", "t"],
    "day": [" 2024-01-01 ", "2024-02-30", "0000-01-01", "2024-1-5", "2023-02-29", "", "20240101"],
    "at": [
        "2024-01-01 10:00", "2024-01-01T10:00:00.123456+02:00", "2024-01-01T24:00", "2024-12-31T23:59:59.5-05:30",
        "2024-02-30T10:00", "2024-01-01T10:00:00+2:00", "", "2024-01-01",
    ],
    "status": ["shipped", "SHIPPED", "toolongvalue", "", '"new"'],
    "level": ["2", "4", "", "03", "x"],
}  # fmt: skip


def _tricky_rows() -> list[str]:
    rows = []
    for field, values in ODD_VALUES.items():
        for value in values:
            row = (
                {**GOOD, "id": f"O-{len(rows) + 100}", field: value}
                if field != "id"
                else {**GOOD, "id": value}
            )
            rows.append(",".join(row.values()))
    return [*rows, ",,,,,,,,", "", 'O-9,4,1,true,2024-01-01,2024-01-01T00:00,new,2,"two\nlines, quoted"']


def _write(tmp_path: Path, text: str, name: str = "orders.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _record_path(path: Path, fmt: Any, schema: Any) -> tuple[dict[int, tuple], dict[int, list[str]]]:
    loaded, quarantined = {}, {}
    for record in read_records(path, fmt):
        if record.error:
            quarantined[record.number] = [record.error]
            continue
        clean, reasons = validate_record(record.fields, schema)
        if clean is None:
            quarantined[record.number] = reasons
        else:
            loaded[record.number] = _stored(tuple(clean[rule.name] for rule in schema.fields))
    return loaded, quarantined


def _fast_path(path: Path, fmt: Any, schema: Any) -> tuple[dict[int, tuple], dict[int, list[str]], int]:
    loaded, quarantined, fast = {}, {}, 0
    for batch in read_columnar(path, fmt, schema):
        for row in csv.reader(io.StringIO(batch.csv(numbered=True).decode("utf-8"))):
            *values, number = row
            loaded[int(number)] = tuple(
                _as_record_path_value(v, r.type) for v, r in zip(values, schema.fields, strict=True)
            )
            fast += 1
        for record in batch.suspects:
            clean, reasons = validate_record(record.fields, schema)
            if clean is None:
                quarantined[record.number] = reasons
            else:
                loaded[record.number] = _stored(tuple(clean[rule.name] for rule in schema.fields))
    return loaded, quarantined, fast


def _as_record_path_value(text: str, type_name: str) -> Any:
    """What PostgreSQL would store for the fast path's CSV text, in the record path's Python types."""
    if text == "":  # unquoted empty field = NULL (no declared value is ever an empty string)
        return None
    if type_name == "boolean":
        return {"t": True, "f": False}[text]
    if type_name == "number":  # a NUMERIC column keeps every digit of the text
        return Decimal(text)
    return convert_value(text, type_name)


def _stored(values: tuple) -> tuple:
    """The record path's values as a NUMERIC column keeps them: a float arrives as its repr."""
    return tuple(Decimal(repr(v)) if isinstance(v, float) else v for v in values)


def _same_decisions(path: Path, fmt: Any, schema: Any) -> int:
    expected = _record_path(path, fmt, schema)
    loaded, quarantined, fast = _fast_path(path, fmt, schema)
    assert quarantined == expected[1]
    assert loaded == expected[0]
    return fast


def test_tricky_csv_gets_the_same_decisions_and_values(tmp_path: Path) -> None:
    path = _write(tmp_path, "\n".join([HEADER, *_tricky_rows()]) + "\n")
    fmt, schema = options_from_dict({"format": "csv"}), schema_from_dict(SCHEMA)
    assert fast_path_blocker(fmt, schema) is None
    fast = _same_decisions(path, fmt, schema)
    assert fast >= 25  # most rows really took the fast path


def test_bom_latin1_semicolon_renamed_and_headerless_files(tmp_path: Path) -> None:
    schema = schema_from_dict(
        {"fields": [{"name": "nom", "type": "string"}, {"name": "n", "type": "integer"}]}
    )
    latin = _write(tmp_path, "Name;Menge\nZoë;1\nJürgen; 2 \nØrsted;x\n", "l.csv", "latin-1")
    fmt = options_from_dict(
        {"format": "csv", "delimiter": ";", "encoding": "latin-1", "rename": {"Name": "nom", "Menge": "n"}}
    )
    assert _same_decisions(latin, fmt, schema) == 2
    bom = _write(tmp_path, "\ufeffnom,n\r\nA,1\r\n\r\nB,2\r\n", "b.csv")
    assert _same_decisions(bom, options_from_dict({"format": "csv"}), schema) == 2
    tsv = _write(tmp_path, "A\t1\nB\tx\n", "t.tsv")
    assert (
        _same_decisions(
            tsv, options_from_dict({"format": "tsv", "header": False, "columns": ["nom", "n"]}), schema
        )
        == 1
    )


def test_what_the_fast_path_cannot_mirror_sends_the_file_to_the_record_path(tmp_path: Path) -> None:
    fmt, schema = options_from_dict({"format": "csv"}), schema_from_dict(SCHEMA)
    ragged = _write(tmp_path, HEADER + "\nO-1,1,1,true,2024-01-01,2024-01-01T00:00,new,1,x,surplus\n")
    with pytest.raises(FastPathUnavailable, match="Arrow cannot read"):
        list(read_columnar(ragged, fmt, schema))
    bad_utf8 = tmp_path / "bad.csv"
    bad_utf8.write_bytes(HEADER.encode() + b"\nO-1,1,1,true,2024-01-01,2024-01-01T00:00,n\xffew,1,x\n")
    with pytest.raises(FastPathUnavailable):
        list(read_columnar(bad_utf8, fmt, schema))
    strict = schema_from_dict({**SCHEMA, "extra_fields": "reject"})
    with pytest.raises(FastPathUnavailable, match="undeclared"):
        list(read_columnar(_write(tmp_path, HEADER + "\n"), fmt, strict))


def test_file_level_errors_are_the_record_paths(tmp_path: Path) -> None:
    fmt, schema = options_from_dict({"format": "csv"}), schema_from_dict(SCHEMA)
    with pytest.raises(FileParseError, match="missing header row"):
        list(read_columnar(_write(tmp_path, "\n\n"), fmt, schema))
    with pytest.raises(FileParseError, match="duplicate column"):
        list(read_columnar(_write(tmp_path, "id,id\n1,2\n"), fmt, schema))


def test_formats_and_options_the_fast_path_does_not_take() -> None:
    schema = schema_from_dict(SCHEMA)
    assert "record by record" in fast_path_blocker(
        options_from_dict({"format": "xml", "record_path": "o"}), schema
    )
    assert fast_path_blocker(options_from_dict({"format": "csv", "skip_blank_lines": False}), schema)
    dated = schema_from_dict({"fields": [{"name": "d", "type": "date", "allowed": ["2024-01-01"]}]})
    assert "allowed" in fast_path_blocker(options_from_dict({"format": "csv"}), dated)


EUROPEAN = {
    "decimal_separator": ",",
    "thousands_separator": ".",
    "fields": [
        {"name": "id", "type": "string", "required": True},
        {"name": "day", "type": "date", "format": "%d.%m.%Y"},
        {"name": "at", "type": "datetime", "format": "%d.%m.%Y %H:%M"},
        {"name": "amount", "type": "number"},
        {"name": "qty", "type": "integer"},
        {"name": "price", "type": "number", "decimal_separator": "."},
        {"name": "weight", "type": "number", "thousands_separator": " ", "decimal_separator": ","},
        {"name": "level", "type": "integer", "allowed": ["1.000", 2]},
    ],
}
EUROPEAN_GOOD = {
    "id": "E-1", "day": "03.12.2026", "at": "03.12.2026 13:45", "amount": "1.234,50", "qty": "1.234",
    "price": "12.5", "weight": "1 234,5", "level": "1.000",
}  # fmt: skip
EUROPEAN_ODD = {
    "day": [
        "3.12.2026", "31.02.2026", "29.02.2024", "29.02.2023", "2026-12-03", "03.12.26", "00.12.2026",
        "03.12.0000", " 03.12.2026 ", "03/12/2026", "03.12.2026x", "03.13.2026", "",
    ],
    "at": ["03.12.2026 24:00", "03.12.2026 9:05", "03.12.2026  13:45", "03.12.2026T13:45", "03.12.2026", "31.12.2026 23:59"],
    "amount": [
        "1234,50", "1,234.50", "1.234", "1.5", "12.34,5", "-1.234,5", "+1.234,5", "0,5", ",5", "5,", "0.123",
        "1.234.567,891", "1e3", "12345678901234,5678", "007,5", "1234.5", "-0,0", "1.234,", "",
    ],
    "qty": ["1234", "1.234,0", "12.34", "+5", "-1.000", "1.000.000", "01.000", "1 000", "0"],
    "price": ["1,5", "1.234", "0.5", "1,234.5"],
    "weight": ["1 234 567,5", "1234567,5", "1 234.5", "12 34,5", "1\u00a0234,5"],
    "level": ["1000", "2", "1", "2,0"],
}  # fmt: skip


def test_date_formats_and_european_numbers_get_the_same_decisions_and_values(tmp_path: Path) -> None:
    rows = [";".join(EUROPEAN_GOOD)]
    for field, values in EUROPEAN_ODD.items():
        for value in values:
            rows.append(";".join({**EUROPEAN_GOOD, "id": f"E-{len(rows)}", field: value}.values()))
    path = _write(tmp_path, "\r\n".join(rows) + "\r\n", "partner.csv", "latin-1")
    fmt = options_from_dict({"format": "csv", "delimiter": ";", "encoding": "latin-1"})
    schema = schema_from_dict(EUROPEAN)
    assert fast_path_blocker(fmt, schema) is None
    loaded, quarantined = _record_path(path, fmt, schema)
    assert len(loaded) >= 25 and len(quarantined) >= 25  # both decisions are well represented
    assert loaded[1][1:5] == (date(2026, 12, 3), datetime(2026, 12, 3, 13, 45), Decimal("1234.5"), 1234)
    assert any("'1,234.50'" in r and "decimal separator ','" in r for rs in quarantined.values() for r in rs)
    assert _same_decisions(path, fmt, schema) >= 20  # the canonical rows took the fast path


def test_date_formats_the_fast_path_cannot_read_send_the_file_to_the_record_path() -> None:
    fmt = options_from_dict({"format": "csv"})
    for fmt_text in ("%d %b %Y", "%d.%m.%y", "%Y-%m-%dT%H:%M%z", "%d.%m.%Y %I:%M %p"):
        schema = schema_from_dict({"fields": [{"name": "d", "type": "datetime", "format": fmt_text}]})
        assert "date format" in fast_path_blocker(fmt, schema)


def test_the_written_out_whitespace_is_what_str_strip_removes() -> None:
    # The fast path trims with this list; the record path with str.strip(). A Python whose Unicode data
    # adds a space character must fail here, not load that character untrimmed.
    scanned = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    assert PYTHON_WHITESPACE == scanned
    assert ("x" + PYTHON_WHITESPACE).strip() == "x"
