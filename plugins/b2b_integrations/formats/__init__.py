"""Server-free building blocks for file imports: stream records from a local file, validate rows."""

from __future__ import annotations

from b2b_integrations.formats.readers import (
    FileParseError,
    FormatOptions,
    RawRecord,
    options_from_dict,
    read_records,
)
from b2b_integrations.formats.validation import FieldRule, RowSchema, schema_from_dict, validate_record

__all__ = [
    "FieldRule",
    "FileParseError",
    "FormatOptions",
    "RawRecord",
    "RowSchema",
    "options_from_dict",
    "read_records",
    "schema_from_dict",
    "validate_record",
]
