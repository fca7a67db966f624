"""Typed checks of a record import's field formats: date formats and number separators.

A step's ``schema`` stays a mapping that ``formats.validation.schema_from_dict`` turns into rules (the
operators take the same mapping). These models type only the options that have a form of their own, so a
wrong one is reported at its own key path (``schema.fields[2].format``), not as one message on the step.
Every other key is left to ``schema_from_dict``, which the step's validator calls afterwards.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from b2b_integrations.config.references import iter_references
from b2b_integrations.formats.validation import (
    DECIMAL_SEPARATORS,
    THOUSANDS_SEPARATORS,
    date_format_example,
)

DecimalSeparator = Literal[DECIMAL_SEPARATORS]  # type: ignore[valid-type]
ThousandsSeparator = Literal[THOUSANDS_SEPARATORS]  # type: ignore[valid-type]


def _is_reference(value: Any) -> bool:
    # Checked once the customer's value is filled in (config/validate.py validates the step again).
    return any(True for _ in iter_references(value))


def _typed(
    value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo, field_types: tuple[str, ...]
) -> tuple[Any, bool]:
    """(value, whether it is given and checked): an unset option or a reference is left as written; a
    given one must have its type and belong to a field of one of ``field_types``."""
    if value is None or _is_reference(value):
        return value, False
    value = handler(value)
    field_type = info.data.get("type")
    if isinstance(field_type, str) and not _is_reference(field_type) and field_type not in field_types:
        raise ValueError(f"applies to {' and '.join(field_types)} fields, not {field_type}")
    return value, True


class _SeparatorOptions(BaseModel):
    # Not StrictModel: other keys belong to schema_from_dict, and " " is a separator, never stripped.
    model_config = ConfigDict(extra="allow", frozen=True)

    # First, so the other options' validators see it; None at schema level (no field type to check).
    type: Any = None
    decimal_separator: DecimalSeparator | None = None
    thousands_separator: ThousandsSeparator | None = None

    @field_validator("decimal_separator", "thousands_separator", mode="wrap")
    @classmethod
    def _separator(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        value, given = _typed(value, handler, info, ("integer", "number"))
        # Absent from info.data when itself wrong: that is reported on its own, nothing to compare with.
        decimal = info.data.get("decimal_separator", "")
        if (
            given
            and info.field_name == "thousands_separator"
            and decimal != ""
            and not _is_reference(decimal)
            and value == (decimal or ".")
        ):
            raise ValueError(
                f"{value!r} is also the decimal separator (which is '.' unless decimal_separator says otherwise)"
            )
        return value


class FieldFormatOptions(_SeparatorOptions):
    """One field's format options; a field that sets a separator takes neither from the schema."""

    type: Any = "string"
    format: str | None = None

    @field_validator("format", mode="wrap")
    @classmethod
    def _format(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        value, given = _typed(value, handler, info, ("date", "datetime"))
        if given:
            date_format_example(value)
        return value


_FIELD_ENTRIES: TypeAdapter[dict[Any, FieldFormatOptions]] = TypeAdapter(dict[Any, FieldFormatOptions])


class RowSchemaFormatOptions(_SeparatorOptions):
    """The schema's number format (defaults of its integer and number fields) and its fields' options."""

    fields: Any = None

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        # Both forms of schema_from_dict: a list of rules, or a mapping name -> rule. Entries that are not
        # mappings are schema_from_dict's to report.
        if isinstance(value, list):
            entries = {i: spec for i, spec in enumerate(value) if isinstance(spec, dict)}
        elif isinstance(value, dict):
            entries = {name: spec for name, spec in value.items() if isinstance(spec, dict)}
        else:
            return value
        _FIELD_ENTRIES.validate_python(entries)
        return value


def check_schema_formats(schema: Any) -> None:
    """``pydantic.ValidationError`` located inside ``schema`` for a wrong date format or separator."""
    if isinstance(schema, dict):
        RowSchemaFormatOptions.model_validate(schema)


def _checked_schema(schema: dict[str, Any]) -> dict[str, Any]:
    check_schema_formats(schema)
    return schema


RowSchemaMapping = Annotated[dict[str, Any], AfterValidator(_checked_schema)]
"""A step's ``schema`` option: still a mapping, its date formats and separators checked where they are."""
