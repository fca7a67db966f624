"""The ``format`` block of a file import: how to read one file (``formats.readers`` reads with it)."""

from __future__ import annotations

import codecs
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from b2b_integrations.config.options import OR_REFERENCE, OptionBlock, is_reference, known_encoding, one_of

Format = Literal["csv", "tsv", "json", "ndjson", "xml", "xlsx"]
FORMATS: tuple[str, ...] = Format.__args__  # type: ignore[attr-defined]


def _encoding(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"encoding must be a string, got {value!r}")
    return known_encoding(value)


def _single_char(name: str) -> Any:
    def check(value: Any) -> Any:
        if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
            raise ValueError(f"{name} must be a single character (not a newline), got {value!r}")
        return value

    return BeforeValidator(check)


def _flag(name: str) -> Any:
    def check(value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value

    return BeforeValidator(check)


def _columns(value: Any) -> Any:
    if value is None:
        return value
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        raise ValueError(f"columns must be a list of non-empty strings, got {value!r}")
    if not value:
        raise ValueError("columns must not be empty")
    return value


def _rename(value: Any) -> Any:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ValueError(f"rename must map column names to non-empty names, got {value!r}")
    return value


def _record_path(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value.strip(". /")):
        raise ValueError(f"record_path must be a non-empty string, got {value!r}")
    return value


def _sheet(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
        raise ValueError(f"sheet must be a sheet name or a 0-based index, got {value!r}")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"sheet index must be >= 0, got {value}")
    return value


def is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


class FileFormat(OptionBlock):
    """How to read one file: its format, text encoding, CSV dialect, columns and where the records are."""

    unknown_keys: ClassVar[str | None] = "unknown format option(s) {unknown}; allowed: {allowed}"

    format: Annotated[
        Format,
        BeforeValidator(one_of(FORMATS, "format must be one of {choices}, got {value!r}")),
        OR_REFERENCE,
    ] = Field(description="csv, tsv, json, ndjson, xml or xlsx.")
    encoding: Annotated[str, BeforeValidator(_encoding), OR_REFERENCE] = Field(
        "utf-8", description="Text encoding (a UTF-8 byte-order mark is dropped)."
    )
    delimiter: Annotated[str, _single_char("delimiter"), OR_REFERENCE] | None = Field(
        None, description="Field separator of csv (default ',') and tsv (default tab)."
    )
    quotechar: Annotated[str, _single_char("quotechar"), OR_REFERENCE] = Field(
        '"', description="Quote character of csv and tsv."
    )
    header: Annotated[bool, _flag("header"), OR_REFERENCE] = Field(
        True, description="The first row holds the column names (csv, tsv, xlsx)."
    )
    columns: Annotated[list[str] | None, BeforeValidator(_columns)] = Field(
        None, description="Column names, in order (required when header is false)."
    )
    rename: Annotated[dict[str, str], BeforeValidator(_rename)] = Field(
        default_factory=dict, description="Column name in the file -> field name."
    )
    record_path: Annotated[str | None, BeforeValidator(_record_path)] = Field(
        None, description="Where the records are: xml element path (required for xml), json dotted path."
    )
    sheet: Annotated[str | int | None, BeforeValidator(_sheet), OR_REFERENCE] = Field(
        None, description="xlsx: sheet name or 0-based index (default: the first sheet)."
    )
    skip_blank_lines: Annotated[bool, _flag("skip_blank_lines"), OR_REFERENCE] = Field(
        True, description="csv and tsv: blank lines are not records."
    )

    @model_validator(mode="before")
    @classmethod
    def _needs_format(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"format options must be a mapping, got {type(data).__name__}")
        if "format" not in data:
            raise ValueError(f"format options need 'format' (one of {list(FORMATS)})")
        return data

    @model_validator(mode="after")
    def _check_combination(self) -> FileFormat:
        if is_reference(self.format):
            return self
        if self.format in ("csv", "tsv", "xlsx") and self.header is False and self.columns is None:
            raise ValueError("columns are required when header is false")
        if self.format == "xml" and self.record_path is None:
            raise ValueError("record_path is required for xml (e.g. 'order' or 'orders/order')")
        return self

    @property
    def text_encoding(self) -> str:
        """The codec to open text with: plain UTF-8 becomes ``utf-8-sig`` so a BOM is dropped."""
        return "utf-8-sig" if is_utf8(self.encoding) else self.encoding

    @property
    def effective_delimiter(self) -> str:
        return self.delimiter or ("\t" if self.format == "tsv" else ",")
