"""Validate and convert one record against a declared schema.

:func:`validate_record` returns either the clean, typed record or *all* the reasons it was
rejected, so a quarantine report tells the partner everything wrong with a row at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

from b2b_integrations.config.options import validated
from b2b_integrations.config.row_schema import (
    ExtraFields,
    FieldType,
    RowSchemaOptions,
)

_INTEGER = re.compile(r"[+-]?\d+")
# Only "." is a decimal point: "1,5" is ambiguous (thousands separator or decimal comma) and rejected.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
# A date every date format must write and read back unchanged (a format without a day or a year cannot).
_SAMPLE_MOMENT = datetime(2026, 12, 3, 13, 45, 56, tzinfo=UTC)
# The directives of the fast lane for date formats, each as the zero-padded text strftime writes. strptime
# reads more ("3.12.2026" for %d.%m.%Y); what the lane does not match goes to strptime itself.
_DATE_PARTS = {
    "Y": "[0-9]{4}",
    "m": "0[1-9]|1[0-2]",
    "d": "0[1-9]|[12][0-9]|3[01]",
    "H": "[01][0-9]|2[0-3]",
    "M": "[0-5][0-9]",
    "S": "[0-5][0-9]",
}


@dataclass(frozen=True)
class FieldRule:
    """One declared field: its type and the checks its value must pass."""

    name: str
    type: FieldType = "string"
    required: bool = False
    allowed: list[Any] | None = None
    """Allowed values, compared after conversion."""
    pattern: str | None = None
    """Regex the value's text (stripped, before conversion) must fully match."""
    max_length: int | None = None
    """Maximum length of the value's text (stripped)."""
    format: str | None = None
    """``strptime`` format of a date/datetime text, e.g. ``%d.%m.%Y`` (default: ISO 8601)."""
    decimal_separator: str | None = None
    """Decimal separator of an integer/number text: ``.`` (default) or ``,``."""
    thousands_separator: str | None = None
    """Thousands separator of an integer/number text (default: none allowed)."""

    @property
    def separated(self) -> bool:
        """Whether integer/number texts are written with other separators than a plain decimal point."""
        return self.decimal_separator not in (None, ".") or self.thousands_separator is not None


def date_format_example(fmt: Any) -> str:
    """The sample date written in ``fmt`` (for messages); ``ValueError`` unless ``fmt`` is a ``strptime``
    format that reads back the day, month and year it wrote."""
    if not isinstance(fmt, str) or "%" not in fmt:
        raise ValueError(f"format must be a strptime format such as '%d.%m.%Y', got {fmt!r}")
    try:
        example = _SAMPLE_MOMENT.strftime(fmt)
        parsed = datetime.strptime(example, fmt)
    except ValueError as exc:
        raise ValueError(f"format {fmt!r} cannot be read back: {exc}") from None
    if parsed.date() != _SAMPLE_MOMENT.date():
        raise ValueError(
            f"format {fmt!r} does not name a whole date: it needs the day (%d), the month (%m, %b) "
            f"and the year (%Y, %y)"
        )
    return example


@dataclass(frozen=True)
class RowSchema:
    """The declared fields of a record and what to do with undeclared ones."""

    fields: list[FieldRule]
    extra_fields: ExtraFields = "drop"

    @cached_property
    def checkers(self) -> list[tuple[str, FieldChecker]]:
        """One specialised checker per declared field, built once (validation runs per record)."""
        return [(rule.name, _field_checker(rule)) for rule in self.fields]

    @cached_property
    def declared(self) -> frozenset[str]:
        return frozenset(rule.name for rule in self.fields)


# --------------------------------------------------------------------------- conversion


def _to_string(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 12345 as 12345.0; a code field wants "12345"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _to_integer(value: Any) -> int:
    if isinstance(value, bool):  # bool is an int subclass, but True is not a quantity
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise ValueError


def _to_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value)
    raise ValueError


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):  # check first: datetime is a date subclass
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        return date.fromisoformat(value)
    raise ValueError


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    # Plain digits would otherwise parse as a compact date ("20240115"); insist on separators.
    if isinstance(value, str) and _DATE.match(value):
        if value[-1:] in ("Z", "z"):
            value = value[:-1] + "+00:00"
        return datetime.fromisoformat(value)
    raise ValueError


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "date": _to_date,
    "datetime": _to_datetime,
}


def convert_value(value: Any, type_name: str) -> Any:
    """Convert ``value`` (strings already stripped) to ``type_name``; ``ValueError`` if it cannot."""
    return _CONVERTERS[type_name](value)


def rule_converter(rule: FieldRule) -> tuple[Callable[[Any], Any], str]:
    """The converter of one field's values (its format and separators applied) and the expected form a
    refusal names, e.g. ``date in the form '%d.%m.%Y' (e.g. 03.12.2026)``."""
    if rule.format is not None and rule.type in ("date", "datetime"):
        example = date_format_example(rule.format)
        return (
            _formatted_date(rule.format, rule.type == "datetime"),
            f"{rule.type} in the form {rule.format!r} (e.g. {example})",
        )
    if rule.separated and rule.type in ("integer", "number"):
        return _separated_number(rule), _separated_form(rule)
    return _CONVERTERS[rule.type], rule.type


def date_format_pattern(fmt: str) -> str | None:
    """A regex, one named group per directive, of the texts strftime writes in ``fmt`` with every field
    zero-padded; None when ``fmt`` uses other directives than %Y %m %d %H %M %S (or one twice).

    Everything it matches, strptime reads too, into the same fields (its patterns try two digits first), so
    both import paths use it as a fast lane: the record path instead of strptime (30x faster), the Arrow
    path as its check. Unanchored: Python's ``fullmatch`` and RE2's ``^...$`` anchor it.
    """
    parts, seen, i = [], set(), 0
    while i < len(fmt):
        if fmt[i] != "%":
            parts.append(re.escape(fmt[i]))
            i += 1
            continue
        directive = fmt[i + 1 : i + 2]
        if directive == "%":
            parts.append("%")
        elif directive in _DATE_PARTS and directive not in seen:
            parts.append(f"(?P<{directive}>{_DATE_PARTS[directive]})")
            seen.add(directive)
        else:
            return None
        i += 2
    return "".join(parts) if {"Y", "m", "d"} <= seen else None


def _formatted_date(fmt: str, keep_time: bool) -> Callable[[Any], Any]:
    fallback = _to_datetime if keep_time else _to_date
    pattern = date_format_pattern(fmt)
    lane = re.compile(pattern).fullmatch if pattern is not None else None

    def convert(value: Any) -> Any:
        if not isinstance(value, str):  # a spreadsheet's date cell is a date whatever the format
            return fallback(value)
        found = lane(value) if lane is not None else None
        if found is None:
            parsed = datetime.strptime(value, fmt)
        else:  # datetime() refuses what strptime refuses here: day 0, February 30th, year 0
            part = found.groupdict("0")
            parsed = datetime(*(int(part.get(k, "0")) for k in "YmdHMS"))  # type: ignore[arg-type]
        return parsed if keep_time else parsed.date()

    return convert


def separated_number_pattern(decimal: str, thousands: str | None, integer: bool) -> str:
    """Regex of a number text with these separators: digits grouped by three throughout, or not at all.

    Strict on purpose: with ``,`` as the decimal separator ``1,234.5`` is refused, not read as 1.2345.
    """
    digits = rf"(?:[1-9]\d{{0,2}}(?:{re.escape(thousands)}\d{{3}})+|\d+)" if thousands else r"\d+"
    fraction = "" if integer else rf"(?:{re.escape(decimal)}\d+)?"
    return rf"[+-]?{digits}{fraction}"


def _separated_number(rule: FieldRule) -> Callable[[Any], Any]:
    decimal, thousands = rule.decimal_separator or ".", rule.thousands_separator
    integer = rule.type == "integer"
    shape = re.compile(separated_number_pattern(decimal, thousands, integer)).fullmatch
    fallback = _CONVERTERS[rule.type]

    def convert(value: Any) -> Any:
        if not isinstance(value, str):  # a spreadsheet's or JSON's number has no separators to read
            return fallback(value)
        if shape(value) is None:
            raise ValueError
        plain = (value.replace(thousands, "") if thousands else value).replace(decimal, ".")
        converted = int(plain) if integer else float(plain)
        if not math.isfinite(converted):
            raise ValueError
        return converted

    return convert


def _separated_form(rule: FieldRule) -> str:
    decimal, thousands = rule.decimal_separator or ".", rule.thousands_separator
    example = f"1{thousands or ''}234" + ("" if rule.type == "integer" else f"{decimal}5")
    grouping = f"thousands separator {thousands!r}" if thousands else "no thousands separator"
    return f"{rule.type} with decimal separator {decimal!r} and {grouping} (e.g. {example})"


# --------------------------------------------------------------------------- validation


FieldChecker = Callable[[Any], tuple[Any, list[str] | None]]


def _field_checker(rule: FieldRule) -> FieldChecker:
    """A closure that converts and checks one field's value: (converted, reasons or None).

    Everything that depends only on the rule (compiled pattern, converter, allowed set) is resolved
    here, once per schema: validating a million-row file calls the checker millions of times.
    """
    name, required, max_length, type_name = rule.name, rule.required, rule.max_length, rule.type
    convert, expected = rule_converter(rule)
    pattern = re.compile(rule.pattern).fullmatch if rule.pattern is not None else None
    allowed = rule.allowed
    try:
        allowed_set: set[Any] | None = set(allowed) if allowed is not None else None
    except TypeError:  # unhashable allowed values: fall back to the list
        allowed_set = None
    missing = [f"field {name!r} is required"] if required else None

    def check(value: Any) -> tuple[Any, list[str] | None]:
        if value is None:
            return None, missing
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None, missing
            text = value
        else:
            text = _to_string(value)
        reasons = None
        if pattern is not None and pattern(text) is None:
            reasons = [f"field {name!r}: {text!r} does not match pattern {rule.pattern!r}"]
        if max_length is not None and len(text) > max_length:
            reasons = [*(reasons or []), f"field {name!r}: {text!r} is longer than {max_length} characters"]
        try:
            converted = text if type_name == "string" else convert(value)
        except ValueError:
            return None, [*(reasons or []), f"field {name!r}: expected {expected}, got {value!r}"]
        if allowed is not None and (
            converted not in allowed_set if allowed_set is not None else converted not in allowed
        ):
            reasons = [*(reasons or []), f"field {name!r}: {converted!r} is not one of {allowed!r}"]
        return converted, reasons

    return check


def validate_record(fields: dict[str, Any], schema: RowSchema) -> tuple[dict[str, Any] | None, list[str]]:
    """Return ``(clean record, [])`` or ``(None, reasons)`` with every reason the record fails.

    Declared fields come first in schema order (missing optional ones as ``None``); undeclared
    columns are kept as read, dropped, or rejected according to ``schema.extra_fields``.
    """
    clean: dict[str, Any] = {}
    reasons: list[str] = []
    get = fields.get
    for name, check in schema.checkers:
        clean[name], field_reasons = check(get(name))
        if field_reasons:
            reasons.extend(field_reasons)
    if schema.extra_fields != "drop":
        extra = [name for name in fields if name not in schema.declared]
        if extra and schema.extra_fields == "reject":
            reasons.append(f"unexpected field(s): {', '.join(map(str, extra))}")
        elif extra:
            clean.update((name, fields[name]) for name in extra)
    return (None, reasons) if reasons else (clean, [])


# --------------------------------------------------------------------------- config


def schema_from_dict(data: dict[str, Any]) -> RowSchema:
    """Build a :class:`RowSchema` from config; ``ValueError`` with a clear message.

    ``fields`` is a list of ``{name: ..., type: ..., ...}`` or a mapping ``name -> {type: ...}``.
    ``allowed`` values are converted to the field's type here, so YAML ``["1", "2"]`` works for
    an integer field and a typo is reported at load time rather than on every row.
    ``decimal_separator`` / ``thousands_separator`` at schema level are the file's number format: every
    integer and number field that sets neither of its own takes them.
    """
    options = validated(RowSchemaOptions, data, "schema")
    separators = {
        key: value
        for key in ("decimal_separator", "thousands_separator")
        if (value := getattr(options, key)) is not None
    }
    rules = [_rule_from_options(rule.model_dump(), separators) for rule in options.fields]
    return RowSchema(fields=rules, extra_fields=options.extra_fields)


def _with_separators(spec: Any, separators: dict[str, str]) -> Any:
    # A field's own separators replace the schema's as a pair, so "decimal_separator: '.'" on one field
    # of a "," / "." file does not inherit a thousands separator equal to its decimal point.
    if (
        not separators
        or not isinstance(spec, dict)
        or spec.get("type") not in ("integer", "number")
        or {"decimal_separator", "thousands_separator"} & set(spec)
    ):
        return spec
    return {**spec, **separators}


def _rule_from_options(spec: dict[str, Any], separators: dict[str, str]) -> FieldRule:
    """The run-time rule of a validated field; ``allowed`` values are converted to the field's type here, so
    YAML ``["1", "2"]`` works for an integer field and a typo is reported at load time, not on every row."""
    rule = FieldRule(**_with_separators(spec, separators))
    if rule.allowed is None:
        return rule
    converted = []
    convert = rule_converter(rule)[0]
    for value in rule.allowed:
        try:
            converted.append(convert(value.strip() if isinstance(value, str) else value))
        except ValueError:
            raise ValueError(
                f"field {rule.name!r}: allowed value {value!r} is not a valid {rule.type}"
            ) from None
    return FieldRule(**{**spec, **_with_separators(spec, separators), "allowed": converted})


# --------------------------------------------------------------------------- SQL column checks

# Declared SQL type (lower case, without its size) -> field type; integers also carry their range.
_SQL_FIELD_TYPES: dict[str, FieldType] = {
    "varchar": "string",
    "character varying": "string",
    "char": "string",
    "character": "string",
    "nvarchar": "string",
    "text": "string",
    "smallint": "integer",
    "int2": "integer",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "integer",
    "int8": "integer",
    "real": "number",
    "float": "number",
    "float4": "number",
    "float8": "number",
    "double precision": "number",
    "numeric": "number",
    "decimal": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "date": "date",
    "timestamp": "datetime",
    "timestamptz": "datetime",
    "timestamp with time zone": "datetime",
    "timestamp without time zone": "datetime",
    "datetime": "datetime",
}
_INTEGER_BITS = {"smallint": 16, "int2": 16, "integer": 32, "int": 32, "int4": 32, "bigint": 64, "int8": 64}
_SQL_TYPE_PARTS = re.compile(r"\s*([A-Za-z][A-Za-z0-9 ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*")

RecordChecker = Callable[[dict[str, Any]], list[tuple[str, str]]]


def _sql_value_check(name: str, sql_type: str, required: bool) -> FieldChecker | None:
    """A checker for a value bound for a column of ``sql_type``, or None for types we do not know
    (JSONB, UUID, ...: the database decides)."""
    match = _SQL_TYPE_PARTS.fullmatch(sql_type)
    base = match.group(1).lower() if match else ""
    field_type = _SQL_FIELD_TYPES.get(base)
    if field_type is None:
        return _required_only(name) if required else None
    size = int(match.group(2)) if match and match.group(2) else None
    scale = int(match.group(3)) if match and match.group(3) else 0
    rule = FieldRule(name, field_type, required, max_length=size if field_type == "string" and size else None)
    check = _field_checker(rule)
    bits = _INTEGER_BITS.get(base)
    digits = size - scale if base in ("numeric", "decimal") and size else None

    def checked(value: Any) -> tuple[Any, list[str] | None]:
        if isinstance(value, dict | list | tuple | set):
            return None, [f"field {name!r}: expected one {sql_type} value, got {type(value).__name__}"]
        converted, reasons = check(value)
        if reasons or converted is None:
            return converted, reasons
        if bits is not None and not -(2 ** (bits - 1)) <= converted < 2 ** (bits - 1):
            return None, [f"field {name!r}: {converted} is out of range for {sql_type}"]
        if digits is not None and abs(converted) >= 10**digits:
            return None, [f"field {name!r}: {converted} has more than {digits} integer digits ({sql_type})"]
        return converted, None

    return checked


def _required_only(name: str) -> FieldChecker:
    def check(value: Any) -> tuple[Any, list[str] | None]:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None, [f"field {name!r} is required"]
        return value, None

    return check


def sql_record_checker(columns: dict[str, str] | None, required: Sequence[str]) -> RecordChecker:
    """Check one record bound for a SQL table: every ``required`` field (the load key) present and not
    empty, and every value of a declared column (``columns``: column -> SQL type) convertible to its type,
    within its length or range. Returns ``[(field, reason), ...]``; empty when the record is fine.

    Built once per load; the loaded values are not changed (the database converts them as before).
    """
    checks: list[tuple[str, FieldChecker]] = []
    for name, sql_type in (columns or {}).items():
        check = _sql_value_check(name, sql_type, name in required)
        if check is not None:
            checks.append((name, check))
    declared = set(columns or {})
    checks.extend((name, _required_only(name)) for name in required if name not in declared)

    def check_record(record: dict[str, Any]) -> list[tuple[str, str]]:
        problems = []
        for name, check in checks:
            value = record.get(name)
            if isinstance(value, float) and math.isnan(value):
                value = None  # pandas' missing value
            _, reasons = check(value)
            problems.extend((name, reason) for reason in reasons or ())
        return problems

    return check_record
