"""Row validation: conversions, rules, collected reasons, extra fields and schema config."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from b2b_integrations.formats.validation import FieldRule, RowSchema, schema_from_dict, validate_record


def _one(rule: FieldRule, value: Any) -> tuple[dict[str, Any] | None, list[str]]:
    return validate_record({rule.name: value}, RowSchema(fields=[rule]))


def _ok(rule: FieldRule, value: Any) -> Any:
    clean, reasons = _one(rule, value)
    assert reasons == []
    assert clean is not None
    return clean[rule.name]


def _reasons(rule: FieldRule, value: Any) -> list[str]:
    clean, reasons = _one(rule, value)
    assert clean is None
    return reasons


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize(
    ("value", "expected"),
    [("  Anna ", "Anna"), ("x", "x"), (12345, "12345"), (12345.0, "12345"), (1.5, "1.5")],
)
def test_string(value: Any, expected: str) -> None:
    assert _ok(FieldRule("name"), value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("42", 42), (" 42 ", 42), ("-7", -7), ("+3", 3), (42, 42), (42.0, 42)]
)
def test_integer_accepts(value: Any, expected: int) -> None:
    result = _ok(FieldRule("qty", type="integer"), value)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", ["4.2", "abc", 4.2, True, "1e3", "1_000", "4 2"])
def test_integer_rejects(value: Any) -> None:
    assert _reasons(FieldRule("qty", type="integer"), value) == [
        f"field 'qty': expected integer, got {value!r}"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1.5", 1.5), (" -2 ", -2.0), (".5", 0.5), ("1e3", 1000.0), (3, 3.0), (2.25, 2.25), ("7.", 7.0)],
)
def test_number_accepts(value: Any, expected: float) -> None:
    assert _ok(FieldRule("price", type="number"), value) == expected


@pytest.mark.parametrize("value", ["1,5", "abc", "nan", "inf", float("nan"), False, "1.2.3"])
def test_number_rejects(value: Any) -> None:
    reasons = _reasons(FieldRule("price", type="number"), value)
    assert reasons == [f"field 'price': expected number, got {value!r}"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("1", True),
        ("false", False),
        (" no ", False),
        ("0", False),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_boolean_accepts(value: Any, expected: bool) -> None:
    assert _ok(FieldRule("active", type="boolean"), value) is expected


@pytest.mark.parametrize("value", ["y", "maybe", 2, "2"])
def test_boolean_rejects(value: Any) -> None:
    assert _reasons(FieldRule("active", type="boolean"), value) == [
        f"field 'active': expected boolean, got {value!r}"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-02-29", date(2024, 2, 29)),
        (date(2024, 1, 2), date(2024, 1, 2)),
        (datetime(2024, 1, 2, 0, 0), date(2024, 1, 2)),
    ],
)
def test_date_accepts(value: Any, expected: date) -> None:
    result = _ok(FieldRule("d", type="date"), value)
    assert result == expected and type(result) is date


@pytest.mark.parametrize("value", ["2023-02-29", "15.01.2024", "20240115", "2024-01-15T10:00:00", 20240115])
def test_date_rejects(value: Any) -> None:
    assert _reasons(FieldRule("d", type="date"), value) == [f"field 'd': expected date, got {value!r}"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-15T10:30:00Z", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
        ("2024-01-15T10:30:00+02:00", datetime(2024, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=2)))),
        ("2024-01-15 10:30", datetime(2024, 1, 15, 10, 30)),
        ("2024-01-15T10:30:00.123456", datetime(2024, 1, 15, 10, 30, 0, 123456)),
        ("2024-01-15", datetime(2024, 1, 15)),
        (datetime(2024, 1, 15, 8), datetime(2024, 1, 15, 8)),
        (date(2024, 1, 15), datetime(2024, 1, 15)),
    ],
)
def test_datetime_accepts(value: Any, expected: datetime) -> None:
    assert _ok(FieldRule("ts", type="datetime"), value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00", "20240115T1030", 1705312200])
def test_datetime_rejects(value: Any) -> None:
    assert _reasons(FieldRule("ts", type="datetime"), value) == [
        f"field 'ts': expected datetime, got {value!r}"
    ]


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_missing(value: Any) -> None:
    assert _reasons(FieldRule("email", required=True), value) == ["field 'email' is required"]


def test_required_absent_key_and_optional_missing_is_none() -> None:
    schema = RowSchema(fields=[FieldRule("email", required=True), FieldRule("note", type="integer")])
    assert validate_record({}, schema) == (None, ["field 'email' is required"])
    assert validate_record({"email": "a@b.c", "note": " "}, schema) == ({"email": "a@b.c", "note": None}, [])


def test_allowed_after_conversion() -> None:
    rule = FieldRule("prio", type="integer", allowed=[1, 2, 3])
    assert _ok(rule, " 2 ") == 2
    assert _reasons(rule, "5") == ["field 'prio': 5 is not one of [1, 2, 3]"]
    assert _reasons(FieldRule("s", allowed=["new", "done"]), "open") == [
        "field 's': 'open' is not one of ['new', 'done']"
    ]


def test_pattern_on_raw_text() -> None:
    rule = FieldRule("zip", pattern=r"\d{5}")
    assert _ok(rule, " 01234 ") == "01234"
    assert _ok(rule, 12345) == "12345"
    assert _reasons(rule, "1234") == ["field 'zip': '1234' does not match pattern '\\\\d{5}'"]
    assert _reasons(rule, "123456")  # must match fully, not just a prefix
    # Checked before conversion: the integer keeps its leading zero for the check.
    assert _ok(FieldRule("code", type="integer", pattern=r"0\d+"), "0042") == 42


def test_max_length() -> None:
    rule = FieldRule("code", max_length=3)
    assert _ok(rule, " abc ") == "abc"
    assert _reasons(rule, "abcd") == ["field 'code': 'abcd' is longer than 3 characters"]


def test_all_reasons_are_collected() -> None:
    schema = RowSchema(
        fields=[
            FieldRule("email", required=True),
            FieldRule("qty", type="integer"),
            FieldRule("code", pattern=r"[A-Z]+", max_length=2),
            FieldRule("when", type="date"),
        ]
    )
    clean, reasons = validate_record({"qty": "abc", "code": "abc1", "when": "2024-01-01"}, schema)
    assert clean is None
    assert reasons == [
        "field 'email' is required",
        "field 'qty': expected integer, got 'abc'",
        "field 'code': 'abc1' does not match pattern '[A-Z]+'",
        "field 'code': 'abc1' is longer than 2 characters",
    ]


def test_pattern_and_type_reasons_both_reported() -> None:
    reasons = _reasons(FieldRule("qty", type="integer", pattern=r"\d+", max_length=2), "abc")
    assert len(reasons) == 3
    assert reasons[-1] == "field 'qty': expected integer, got 'abc'"


def test_clean_record_is_typed_and_ordered() -> None:
    schema = RowSchema(
        fields=[
            FieldRule("id", type="integer", required=True),
            FieldRule("price", type="number"),
            FieldRule("active", type="boolean"),
            FieldRule("day", type="date"),
        ]
    )
    clean, reasons = validate_record(
        {"day": "2024-03-01", "active": "yes", "price": "9.90", "id": "7"}, schema
    )
    assert reasons == []
    assert clean == {"id": 7, "price": 9.9, "active": True, "day": date(2024, 3, 1)}
    assert clean is not None and list(clean) == ["id", "price", "active", "day"]


# --------------------------------------------------------------------------- extra fields


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("keep", ({"id": 1, "extra": " x ", "more": None}, [])),
        ("drop", ({"id": 1}, [])),
        ("reject", (None, ["unexpected field(s): extra, more"])),
    ],
)
def test_extra_fields(mode: Any, expected: Any) -> None:
    schema = RowSchema(fields=[FieldRule("id", type="integer")], extra_fields=mode)
    assert validate_record({"id": "1", "extra": " x ", "more": None}, schema) == expected


def test_reject_without_extras_passes() -> None:
    schema = RowSchema(fields=[FieldRule("id")], extra_fields="reject")
    assert validate_record({"id": "a"}, schema) == ({"id": "a"}, [])


# --------------------------------------------------------------------------- schema_from_dict


def test_schema_from_dict_list_and_mapping_forms() -> None:
    as_list = schema_from_dict(
        {
            "fields": [
                {"name": "id", "type": "integer", "required": True},
                {"name": "prio", "type": "integer", "allowed": ["1", 2]},
                {"name": "code", "pattern": "[A-Z]{2}", "max_length": 2},
            ],
            "extra_fields": "reject",
        }
    )
    assert as_list.extra_fields == "reject"
    assert as_list.fields[1].allowed == [1, 2]  # converted once, at load time
    as_mapping = schema_from_dict(
        {
            "fields": {
                "id": {"type": "integer", "required": True},
                "prio": {"type": "integer", "allowed": ["1", 2]},
                "code": {"pattern": "[A-Z]{2}", "max_length": 2},
            },
            "extra_fields": "reject",
        }
    )
    assert as_mapping == as_list
    assert schema_from_dict({"fields": {"note": None}}).fields == [FieldRule("note")]
    assert validate_record({"id": "1", "prio": "1", "code": "AB"}, as_list) == (
        {"id": 1, "prio": 1, "code": "AB"},
        [],
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fields": [{"name": "a"}], "extra": "keep"}, r"unknown schema key\(s\) \['extra'\]"),
        ({"fields": []}, "non-empty list"),
        ({}, "non-empty list"),
        ({"fields": [{"name": "a", "maxlen": 3}]}, r"field 'a': unknown key\(s\) \['maxlen'\]"),
        ({"fields": [{"type": "string"}]}, "needs a 'name'"),
        ({"fields": ["a"]}, "must be a mapping"),
        ({"fields": [{"name": "a", "type": "int"}]}, "field 'a': type must be one of"),
        ({"fields": [{"name": "a", "pattern": "[a-"}]}, "field 'a': invalid pattern"),
        ({"fields": [{"name": "a", "max_length": 0}]}, "max_length must be a positive integer"),
        ({"fields": [{"name": "a", "required": "yes"}]}, "required must be true or false"),
        ({"fields": [{"name": "a", "allowed": "x"}]}, "allowed must be a list"),
        (
            {"fields": [{"name": "a", "type": "integer", "allowed": ["x"]}]},
            "allowed value 'x' is not a valid integer",
        ),
        ({"fields": [{"name": "a"}, {"name": "a"}]}, "duplicate field name"),
        ({"fields": [{"name": "a"}], "extra_fields": "ignore"}, "extra_fields must be one of"),
        ([], "must be a mapping"),
    ],
)
def test_schema_from_dict_errors(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schema_from_dict(data)


# --------------------------------------------------------------------------- date formats and separators


def test_date_format_reads_partner_dates_and_names_the_expected_form() -> None:
    day = FieldRule("shipped", type="date", format="%d.%m.%Y")
    assert _ok(day, "03.12.2026") == date(2026, 12, 3)
    assert _ok(day, datetime(2026, 12, 3, 9, 0)) == date(2026, 12, 3)  # a spreadsheet's date cell
    assert _reasons(day, "2026-12-03") == [
        "field 'shipped': expected date in the form '%d.%m.%Y' (e.g. 03.12.2026), got '2026-12-03'"
    ]
    assert _reasons(day, "31.02.2026")[0].startswith("field 'shipped': expected date in the form")
    moment = FieldRule("at", type="datetime", format="%d/%m/%Y %H:%M")
    assert _ok(moment, "03/12/2026 13:45") == datetime(2026, 12, 3, 13, 45)
    assert "(e.g. 03/12/2026 13:45), got '03/12/2026'" in _reasons(moment, "03/12/2026")[0]


def test_european_numbers_are_read_strictly() -> None:
    schema = schema_from_dict(
        {
            "decimal_separator": ",",
            "thousands_separator": ".",
            "fields": [{"name": "amount", "type": "number"}, {"name": "qty", "type": "integer"}],
        }
    )
    assert validate_record({"amount": "1.234,5", "qty": "1.000"}, schema) == (
        {"amount": 1234.5, "qty": 1000},
        [],
    )
    assert validate_record({"amount": 12.5, "qty": 3}, schema)[0] == {"amount": 12.5, "qty": 3}
    clean, reasons = validate_record({"amount": "1,234.5", "qty": "1.5"}, schema)
    assert clean is None
    assert reasons == [
        "field 'amount': expected number with decimal separator ',' and thousands separator '.' "
        "(e.g. 1.234,5), got '1,234.5'",
        "field 'qty': expected integer with decimal separator ',' and thousands separator '.' "
        "(e.g. 1.234), got '1.5'",
    ]
    plain = FieldRule("n", type="number")
    assert _reasons(plain, "1,5") == ["field 'n': expected number, got '1,5'"]  # the default stays "."


def test_a_fields_own_separators_replace_the_schemas_as_a_pair() -> None:
    schema = schema_from_dict(
        {
            "decimal_separator": ",",
            "thousands_separator": ".",
            "fields": [
                {"name": "rate", "type": "number", "decimal_separator": "."},
                {"name": "code", "type": "string"},
            ],
        }
    )
    assert schema.fields[0] == FieldRule("rate", type="number", decimal_separator=".")
    assert schema.fields[1] == FieldRule("code")
    assert validate_record({"rate": "0.25", "code": "1,5"}, schema) == ({"rate": 0.25, "code": "1,5"}, [])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fields": [{"name": "d", "type": "date", "format": "%m.%Y"}]}, "does not name a whole date"),
        ({"fields": [{"name": "d", "type": "date", "format": "dd.mm.yyyy"}]}, "must be a strptime format"),
        ({"fields": [{"name": "d", "type": "date", "format": "%d.%m.%Y %Q"}]}, "cannot be read back"),
        ({"fields": [{"name": "d", "format": "%d.%m.%Y"}]}, "format applies to date and datetime"),
        ({"fields": [{"name": "n", "decimal_separator": ","}]}, "apply to integer and number fields"),
        (
            {"fields": [{"name": "n", "type": "number", "decimal_separator": ";"}]},
            "decimal_separator must be",
        ),
        ({"fields": [{"name": "n"}], "thousands_separator": "_"}, "thousands_separator must be one of"),
        (
            {"fields": [{"name": "n"}], "decimal_separator": ",", "thousands_separator": ","},
            "also the decimal",
        ),
        (
            {"fields": [{"name": "n", "type": "number", "allowed": ["1.5"]}], "decimal_separator": ","},
            "allowed value '1.5' is not a valid number",
        ),
    ],
)
def test_format_and_separator_errors(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schema_from_dict(data)


@pytest.mark.parametrize(
    "fmt", ["%d.%m.%Y", "%Y%m%d", "%d/%m/%Y %H:%M:%S", "%m-%d-%Y %H%M", "%Y-%m-%dT%H:%M"]
)
def test_the_date_format_fast_lane_decides_as_strptime(fmt: str) -> None:
    import random

    from b2b_integrations.formats.validation import rule_converter

    rng = random.Random(fmt)
    convert = rule_converter(FieldRule("at", type="datetime", format=fmt))[0]
    texts = []
    for _ in range(3000):  # real moments, then one digit changed: day 0, month 13, February 30th ...
        text = datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                        rng.randint(0, 59), rng.randint(0, 59)).strftime(fmt)  # fmt: skip
        at = rng.randrange(len(text))
        texts += [text, text[:at] + str(rng.randint(0, 9)) + text[at + 1 :] if text[at].isdigit() else text]
    for text in texts:
        try:
            expected: Any = datetime.strptime(text, fmt)
        except ValueError:
            expected = ValueError
        try:
            got: Any = convert(text)
        except ValueError:
            got = ValueError
        assert got == expected, text


def test_spreadsheet_cells_text_in_partner_forms_and_typed_cells_as_they_are(tmp_path: Any) -> None:
    from openpyxl import Workbook

    from b2b_integrations.formats.readers import options_from_dict, read_records

    book = Workbook()
    book.active.append(["day", "amount"])
    book.active.append(["03.12.2026", "1.234,50"])  # cells typed as text, as partners' exports often are
    book.active.append([datetime(2026, 12, 4), 12.5])  # a date cell and a number cell
    book.active.append(["2026-12-05", "1,234.50"])
    book.save(tmp_path / "partner.xlsx")
    schema = schema_from_dict(
        {
            "decimal_separator": ",",
            "thousands_separator": ".",
            "fields": [
                {"name": "day", "type": "date", "format": "%d.%m.%Y"},
                {"name": "amount", "type": "number"},
            ],
        }
    )
    records = read_records(tmp_path / "partner.xlsx", options_from_dict({"format": "xlsx"}))
    results = [validate_record(record.fields, schema) for record in records]
    assert results[:2] == [
        ({"day": date(2026, 12, 3), "amount": 1234.5}, []),
        ({"day": date(2026, 12, 4), "amount": 12.5}, []),
    ]
    assert results[2][0] is None and len(results[2][1]) == 2
