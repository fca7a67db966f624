"""Typed config variables declared by an integration template, and checking customer values against them."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from b2b_integrations.config.base import StrictModel


class VariableType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    LIST = "list"
    MAPPING = "mapping"


_PYTHON_TYPES: dict[VariableType, tuple[type, ...]] = {
    VariableType.STRING: (str,),
    VariableType.INTEGER: (int,),
    VariableType.NUMBER: (int, float),
    VariableType.BOOLEAN: (bool,),
    VariableType.LIST: (list,),
    VariableType.MAPPING: (dict,),
}

# The JSON-schema type of each variable type, used for the "params" form of manual runs in the UI.
JSON_TYPES: dict[VariableType, str] = {
    VariableType.STRING: "string",
    VariableType.INTEGER: "integer",
    VariableType.NUMBER: "number",
    VariableType.BOOLEAN: "boolean",
    VariableType.LIST: "array",
    VariableType.MAPPING: "object",
}


class ConfigVariable(StrictModel):
    """One config variable an integration asks each customer for, like a field of a setup wizard."""

    type: VariableType = Field(description="Value type.")
    description: str = Field("", description="Shown in docs and the Airflow UI.")
    default: Any = Field(None, description="Value used when the customer gives none. No default = required.")
    required: bool | None = Field(None, description="Defaults to true when there is no default.")
    choices: list[Any] | None = Field(None, description="Allowed values.")
    minimum: float | None = Field(None, description="Lowest allowed value (integer/number).")
    maximum: float | None = Field(None, description="Highest allowed value (integer/number).")
    pattern: str | None = Field(None, description="Regular expression a string value must fully match.")
    items: VariableType | None = Field(None, description="Type of each element of a list.")

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None

    @model_validator(mode="after")
    def _check_declaration(self) -> ConfigVariable:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern is not a valid regular expression: {e}") from e
        if self.items is not None and self.type is not VariableType.LIST:
            raise ValueError("'items' only applies to variables of type list")
        if self.default is not None:
            problem = check_value(self, self.default)
            if problem:
                raise ValueError(f"default {self.default!r} is invalid: {problem}")
        return self


def _type_matches(expected: VariableType, value: Any) -> bool:
    # bool is a subclass of int in Python; a YAML "true" must not pass as an integer.
    if isinstance(value, bool) and expected is not VariableType.BOOLEAN:
        return False
    return isinstance(value, _PYTHON_TYPES[expected])


def check_value(var: ConfigVariable, value: Any) -> str | None:
    """Return why ``value`` does not fit ``var``, or None when it does."""
    if not _type_matches(var.type, value):
        return f"expected {var.type.value}, got {type(value).__name__} {value!r}"
    if var.choices is not None and value not in var.choices:
        return f"expected one of {var.choices!r}, got {value!r}"
    if var.minimum is not None and value < var.minimum:
        return f"must be >= {var.minimum:g}, got {value!r}"
    if var.maximum is not None and value > var.maximum:
        return f"must be <= {var.maximum:g}, got {value!r}"
    if var.pattern is not None and not re.fullmatch(var.pattern, value):
        return f"must match pattern {var.pattern!r}, got {value!r}"
    if var.items is not None:
        for index, item in enumerate(value):
            if not _type_matches(var.items, item):
                return f"item [{index}]: expected {var.items.value}, got {type(item).__name__} {item!r}"
    return None
