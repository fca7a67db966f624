"""Building blocks of typed option blocks: leaves that may hold a ``${...}`` reference, blocks that dump as
written, and one way to turn a block's validation error into the message users read.

A structured option (``auth``, ``incremental``, ``format``, ``render``, an event ``target``...) is a pydantic
model, so the JSON Schema describes every key and one validator checks it everywhere: the config loader
(the error's location is the key path), ``config/validate.py`` again once references are filled in, and the
run-time builders (``auth_from_config``, ``report_spec_from_config``...), which validate the resolved values
with the same model and raise ``ValueError`` naming the key (:func:`validated`).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

from pydantic import (
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from b2b_integrations.config.base import StrictModel

_ANY_REF = re.compile(r"\$\{[^}]*\}")
REFERENCE_JSON_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": r"\$\{",
    "description": "A ${config.NAME}, ${customer.id|name} or ${connections.SLOT} reference.",
}


def is_reference(value: Any) -> bool:
    """Whether a leaf holds a ``${...}`` reference (its own type is checked once it is filled in)."""
    return isinstance(value, str) and _ANY_REF.search(value) is not None


class _OrReference:
    """``Annotated[T, OR_REFERENCE]``: a T, or a string holding a ``${...}`` reference kept as written.

    Put it last in ``Annotated`` so it runs before the leaf's own validators.
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def keep_reference(value: Any, validate: core_schema.ValidatorFunctionWrapHandler) -> Any:
            return value if is_reference(value) else validate(value)

        return core_schema.no_info_wrap_validator_function(
            keep_reference,
            handler(source),
            # A reference is a string where the leaf's type is not: dump leaves as they are, unwarned.
            serialization=core_schema.plain_serializer_function_ser_schema(lambda value: value),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        inner = handler(schema)
        annotations = {k: inner.pop(k) for k in ("title", "description", "default") if k in inner}
        return {"anyOf": [inner, REFERENCE_JSON_SCHEMA], **annotations}


OR_REFERENCE = _OrReference()


def known_encoding(value: str) -> str:
    """``value`` if Python has a codec of that name; ``ValueError`` otherwise."""
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}") from None
    return value


def one_of(choices: Iterable[Any], message: str) -> Callable[[Any], Any]:
    """A before-validator refusing a value outside ``choices`` with ``message`` (``{choices}``, ``{value}``),
    so a leaf keeps the wording users had before it was typed."""
    allowed = tuple(choices)

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(message.format(choices=list(allowed), value=value))
        return value

    return check


class OptionBlock(StrictModel):
    """A structured option: unknown keys are errors, and it dumps only the keys that were written.

    Dumping as written keeps the operators' arguments (and the ``config_refs`` re-resolved at run time)
    what the template says; defaults are applied by the same model when the run-time builder validates the
    resolved block. ``unknown_keys`` (a format with ``{unknown}`` and ``{allowed}``) keeps a block's own
    message for a misspelt key; without it pydantic reports the key at its own path.
    """

    # Whitespace is meaningful in options (a tab delimiter, a space as thousands separator).
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    unknown_keys: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if cls.unknown_keys is not None and isinstance(data, dict):
            allowed = sorted(cls.model_fields)
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                raise ValueError(
                    cls.unknown_keys.format(
                        unknown=unknown,
                        allowed=allowed,
                        unknown_text=", ".join(unknown),
                        allowed_text=", ".join(cls.model_fields),
                        declared=list(cls.model_fields),
                    )
                )
        return data

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> Any:
        return self.written_keys_only(handler(self))

    def written_keys_only(self, dumped: Any) -> Any:
        """``dumped`` (this block's full dump) without the keys the block was not given."""
        if not isinstance(dumped, dict):
            return dumped
        written = {
            (field.serialization_alias or field.alias or name)
            for name, field in type(self).model_fields.items()
            if name in self.model_fields_set
        } | self.model_fields_set
        return {key: value for key, value in dumped.items() if key in written}


Block = TypeVar("Block", bound=StrictModel)


def key_path(loc: Iterable[Any], prefix: str = "") -> str:
    """``("columns", 0, "decimals")`` -> ``columns[0].decimals`` (after ``prefix``), as users write it."""
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(("function-", "json-or-python")):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def error_message(error: ValidationError, prefix: str = "") -> str:
    """The first problem of ``error`` as ``<key path>: <message>`` (the path after ``prefix``).

    A block-level rule (empty location) whose message already starts with ``prefix`` is left as it is.
    """
    item = error.errors(include_url=False)[0]
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against the documented keys)"
    elif item["type"] == "missing":
        message = "required key is missing"
    elif not item["type"].startswith("value_error") and not isinstance(item.get("input"), dict | list):
        message = f"{message} (got {item.get('input')!r})"
    where = key_path(item["loc"], prefix)
    if not where or (not item["loc"] and message.startswith(prefix)):
        return message
    return f"{where}: {message}"


def validated(model: type[Block], value: Any, prefix: str = "") -> Block:
    """``model`` validated from ``value``; ``ValueError`` naming the key (after ``prefix``) otherwise."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise ValueError(error_message(e, prefix)) from None
