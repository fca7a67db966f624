"""The ``schema`` block of a record import: the declared fields of a record and what to do with others.

``formats.validation.schema_from_dict`` builds the run-time :class:`RowSchema` from the same model, so the
block is checked once, by these classes: at config time (each problem at its key path, leaves may hold a
``${...}`` reference) and again on the resolved values when the operator runs. Messages name the field
(``field 'qty': type must be one of ...``), as users read them before the block was typed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from b2b_integrations.config.options import OR_REFERENCE, OptionBlock, is_reference, one_of

FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime"]
FIELD_TYPES: tuple[str, ...] = FieldType.__args__  # type: ignore[attr-defined]
ExtraFields = Literal["keep", "drop", "reject"]
EXTRA_FIELDS: tuple[str, ...] = ExtraFields.__args__  # type: ignore[attr-defined]
DECIMAL_SEPARATORS: tuple[str, ...] = (".", ",")
# Space, apostrophe (Swiss), no-break and narrow no-break space (French) besides the dot and comma.
THOUSANDS_SEPARATORS: tuple[str, ...] = (".", ",", " ", "'", "\u00a0", "\u202f")
DecimalSeparator = Literal[DECIMAL_SEPARATORS]  # type: ignore[valid-type]
ThousandsSeparator = Literal[THOUSANDS_SEPARATORS]  # type: ignore[valid-type]

_decimal = BeforeValidator(
    one_of((None, *DECIMAL_SEPARATORS), "decimal_separator must be one of {choices}, got {value!r}")
)
_thousands = BeforeValidator(
    one_of((None, *THOUSANDS_SEPARATORS), "thousands_separator must be one of {choices}, got {value!r}")
)


def check_separators(decimal: Any, thousands: Any) -> None:
    """``ValueError`` unless the pair is a decimal separator and an optional, different thousands one."""
    if is_reference(decimal) or is_reference(thousands):
        return
    one_of((None, *DECIMAL_SEPARATORS), "decimal_separator must be one of {choices}, got {value!r}")(decimal)
    one_of((None, *THOUSANDS_SEPARATORS), "thousands_separator must be one of {choices}, got {value!r}")(
        thousands
    )
    if thousands is not None and thousands == (decimal or "."):
        raise ValueError(
            f"thousands_separator {thousands!r} is also the decimal separator (which is '.' unless "
            "decimal_separator says otherwise)"
        )


class FieldRuleOptions(OptionBlock):
    """One declared field: its type and the checks its value must pass."""

    name: str = Field(min_length=1, description="Field name in the record.")
    type: Annotated[FieldType, OR_REFERENCE] = Field("string", description="What the value must convert to.")
    required: Annotated[bool, OR_REFERENCE] = Field(False, description="A missing or empty value is refused.")
    allowed: list[Any] | None = Field(None, description="Allowed values, compared after conversion.")
    pattern: Annotated[str, OR_REFERENCE] | None = Field(
        None, description="Regex the value's text (stripped, before conversion) must fully match."
    )
    max_length: Annotated[int, Field(ge=1), OR_REFERENCE] | None = Field(
        None, description="Maximum length of the value's text (stripped)."
    )
    format: Annotated[str, OR_REFERENCE] | None = Field(
        None, description="strptime format of a date/datetime text, e.g. %d.%m.%Y (default: ISO 8601)."
    )
    decimal_separator: Annotated[DecimalSeparator | None, _decimal, OR_REFERENCE] = Field(
        None, description="Decimal separator of an integer/number text: '.' (default) or ','."
    )
    thousands_separator: Annotated[ThousandsSeparator | None, _thousands, OR_REFERENCE] = Field(
        None, description="Thousands separator of an integer/number text (default: none allowed)."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"field must be a mapping, got {data!r}")
        label = repr(data.get("name", "#?"))
        unknown = sorted(str(key) for key in data if key not in cls.model_fields)
        if unknown:
            raise ValueError(f"field {label}: unknown key(s) {unknown}; allowed: {list(cls.model_fields)}")
        if "name" not in data:
            raise ValueError("field needs a 'name'")
        if not isinstance(data["name"], str) or not data["name"]:
            raise ValueError(f"field name must be a non-empty string, got {data['name']!r}")
        return data

    @field_validator("type", "required", "allowed", "pattern", "max_length", mode="before")
    @classmethod
    def _rule(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or is_reference(value):
            return value
        label = f"field {info.data.get('name')!r}"
        if info.field_name == "type" and value not in FIELD_TYPES:
            raise ValueError(f"{label}: type must be one of {list(FIELD_TYPES)}, got {value!r}")
        if info.field_name == "required" and not isinstance(value, bool):
            raise ValueError(f"{label}: required must be true or false, got {value!r}")
        if info.field_name == "allowed" and not isinstance(value, list):
            raise ValueError(f"{label}: allowed must be a list, got {value!r}")
        if info.field_name == "pattern":
            if not isinstance(value, str):
                raise ValueError(f"{label}: pattern must be a string, got {value!r}")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{label}: invalid pattern {value!r}: {exc}") from None
        if info.field_name == "max_length" and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{label}: max_length must be a positive integer, got {value!r}")
        return value

    @field_validator("format", "decimal_separator", "thousands_separator")
    @classmethod
    def _applies_to_type(cls, value: Any, info: ValidationInfo) -> Any:
        # Absent from info.data when itself wrong: that is reported on its own, nothing to compare with.
        field_type = info.data.get("type")
        if value is None or is_reference(value) or field_type is None or is_reference(field_type):
            return value
        wanted = ("date", "datetime") if info.field_name == "format" else ("integer", "number")
        label = f"field {info.data.get('name')!r}"
        if field_type not in wanted:
            what = (
                "format applies"
                if info.field_name == "format"
                else "decimal_separator and thousands_separator apply"
            )
            raise ValueError(f"{label}: {what} to {' and '.join(wanted)} fields, not {field_type}")
        if info.field_name == "format":
            from b2b_integrations.formats.validation import date_format_example

            try:
                date_format_example(value)
            except ValueError as exc:
                raise ValueError(f"{label}: {exc}") from None
        # A wrong decimal separator is reported on its own: nothing to compare with.
        if info.field_name == "thousands_separator" and "decimal_separator" in info.data:
            check_separators(info.data["decimal_separator"], value)
        return value


def _list_or_mapping(schema: dict[str, Any]) -> None:
    """The JSON Schema of ``fields``: the list of rules, or a mapping name -> rule without its name."""
    as_list = {key: schema.pop(key) for key in ("type", "items", "minItems") if key in schema}
    rule = {"type": "object", "description": "The field's rule (its name is the key)."}
    mapping = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"anyOf": [rule, {"type": "null"}]},
    }
    schema["anyOf"] = [as_list, mapping]


def _mapped_loc(loc: tuple[Any, ...], names: list[str]) -> tuple[Any, ...]:
    if len(loc) > 1 and loc[0] == "fields" and isinstance(loc[1], int) and loc[1] < len(names):
        return ("fields", names[loc[1]], *loc[2:])
    return loc


class RowSchemaOptions(OptionBlock):
    """``fields`` (a list of rules, or a mapping name -> rule), ``extra_fields`` and the file's number format:
    every integer and number field that sets neither separator of its own takes the schema's."""

    unknown_keys: ClassVar[str | None] = "unknown schema key(s) {unknown}; allowed: {allowed}"

    fields: list[FieldRuleOptions] = Field(
        min_length=1,
        description="The declared fields: a list of {name, type, ...}, or a mapping name -> {type, ...}.",
        json_schema_extra=_list_or_mapping,
    )
    extra_fields: Annotated[
        ExtraFields,
        BeforeValidator(one_of(EXTRA_FIELDS, "extra_fields must be one of {choices}, got {value!r}")),
        OR_REFERENCE,
    ] = Field("drop", description="Fields not declared: keep, drop (default) or reject the record.")
    decimal_separator: Annotated[DecimalSeparator | None, _decimal, OR_REFERENCE] = Field(
        None, description="The file's decimal separator, for integer and number fields."
    )
    thousands_separator: Annotated[ThousandsSeparator | None, _thousands, OR_REFERENCE] = Field(
        None, description="The file's thousands separator, for integer and number fields."
    )

    _fields_as_mapping: bool = PrivateAttr(False)

    @model_validator(mode="wrap")
    @classmethod
    def _fields_form(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"schema must be a mapping, got {type(data).__name__}")
        raw = data.get("fields")
        as_mapping = isinstance(raw, dict)
        if as_mapping:
            raw = [
                {"name": name, **(spec or {})} if isinstance(spec, dict | None) else spec
                for name, spec in raw.items()
            ]
        if not isinstance(raw, list) or not raw:
            raise ValueError("schema needs 'fields': a non-empty list of field rules")
        for position, spec in enumerate(raw, 1):
            if not isinstance(spec, dict):
                raise ValueError(f"field #{position} must be a mapping, got {spec!r}")
        try:
            schema = handler({**data, "fields": raw})
        except ValidationError as e:
            if not as_mapping:
                raise
            # Point at the key the user wrote (fields.day.format), not at the position it was read into.
            names = list(data["fields"])
            errors = [
                {**error, "loc": _mapped_loc(error["loc"], names)} for error in e.errors(include_url=False)
            ]
            raise ValidationError.from_exception_data(e.title, errors) from None  # type: ignore[arg-type]
        schema._fields_as_mapping = as_mapping
        return schema

    @model_validator(mode="after")
    def _check_fields(self) -> RowSchemaOptions:
        names = [rule.name for rule in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate field name(s) {duplicates}")
        return self

    @field_validator("thousands_separator")
    @classmethod
    def _differs_from_the_decimal(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and "decimal_separator" in info.data:
            check_separators(info.data["decimal_separator"], value)
        return value

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = self.written_keys_only(handler(self))
        if self._fields_as_mapping and isinstance(dumped, dict):
            dumped["fields"] = {
                rule.pop("name"): rule or None for rule in (dict(r) for r in dumped["fields"])
            }
        return dumped
