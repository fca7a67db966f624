"""Where and how a step writes rows into a SQL table: the ``target`` the table-writing operators take.

The load, file import and API import steps share these options. In a template they sit on the step
(``table``, ``key``, ...); the DAG factory hands them to the operator as one ``target`` argument, which the
operator validates with :class:`SqlTarget` once its templates and ``${config.*}`` references are filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from b2b_integrations.config.base import StrictModel
from b2b_integrations.config.references import has_reference

SQL_TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
SQL_COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ConflictSettings(StrictModel):
    """Rules for rows both systems edit (two-way sync)."""

    last_writer_by: Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)] | None = Field(
        None, description="Update an existing row only when this column (e.g. updated_at) is newer."
    )
    app_owned: list[Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)]] = Field(
        default_factory=list,
        description="Columns our app is the source of truth for: set on insert, never overwritten.",
    )


class DocumentLineField(StrictModel):
    """One column of a line table: a schema field rule, where its value is in the line, and its bounds."""

    name: str = Field(pattern=SQL_COLUMN_PATTERN, description="Column of the line table.")
    path: str | None = Field(
        None, min_length=1, description="Dotted path in the line (default: the name), e.g. amount.@currency."
    )
    type: Literal["string", "integer", "number", "boolean", "date", "datetime"] = "string"
    required: bool = False
    allowed: list[Any] | None = None
    pattern: str | None = None
    max_length: int | None = Field(None, ge=1)
    format: str | None = Field(None, description="strptime format of a date/datetime text.")
    decimal_separator: str | None = None
    thousands_separator: str | None = None
    minimum: float | None = Field(None, description="Smallest allowed value (integer and number fields).")
    maximum: float | None = Field(None, description="Largest allowed value (integer and number fields).")

    @model_validator(mode="after")
    def _check_bounds(self) -> DocumentLineField:
        if (self.minimum is not None or self.maximum is not None) and self.type not in ("integer", "number"):
            raise ValueError(f"minimum/maximum need type integer or number, not {self.type}")
        if self.minimum is not None and self.maximum is not None and self.maximum < self.minimum:
            raise ValueError(f"maximum {self.maximum} is below minimum {self.minimum}")
        return self


class DocumentLines(StrictModel):
    """A repeated group of the document (or of a line) and the table its items go to."""

    name: str | None = Field(None, min_length=1, description="Names the group in reasons (default: path).")
    path: str = Field(min_length=1, description="Dotted path of the items in the document or parent line.")
    table: str = Field(pattern=SQL_TABLE_PATTERN, description="Line table.")
    position: Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)] | None = Field(
        None, description="Column receiving the line's 1-based position (the default key, as line_no)."
    )
    key: list[Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)]] = Field(
        default_factory=list, description="The line's own id fields, instead of its position."
    )
    min_items: int = Field(0, ge=0, description="Fewer lines refuse the document.")
    max_items: int | None = Field(None, ge=1, description="More lines refuse the document.")
    fields: list[DocumentLineField] = Field(min_length=1, description="The line table's columns.")
    columns: dict[Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)], str] | None = Field(
        None, description="Column -> SQL type of the fields, when the step creates its tables."
    )
    lines: list[DocumentLines] = Field(default_factory=list, description="Lines of these lines.")


class DocumentMapping(StrictModel):
    """One record is a document: its top-level fields are the header row, its line groups rows of
    line tables, replaced whole each time the document is loaded again."""

    header_paths: dict[Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)], str] = Field(
        default_factory=dict, description="Header column -> dotted path of a nested value, e.g. total.#text."
    )
    lines: list[DocumentLines] = Field(min_length=1, description="The document's line groups.")


class SqlTarget(StrictModel):
    """The table a step writes and how: insert or upsert by key, created or not, two-way sync rules, and
    documents whose line items go to tables of their own.

    With ``document`` each record is a document with line items (``formats.documents``), e.g. an order:
    its top-level fields are the row of ``table``, each line group goes to its own table, and the document's
    old lines are replaced in the same transaction; a document with a bad line is set aside whole.
    """

    table: str = Field(pattern=SQL_TABLE_PATTERN, description="Target table, optionally schema-qualified.")
    mode: Literal["insert", "upsert"] = Field("upsert", description="upsert replaces rows with the same key.")
    key: list[Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)]] = Field(
        default_factory=list, description="Primary-key columns (required for upsert)."
    )
    columns: dict[Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)], str] | None = Field(
        None, description="Column -> SQL type; used to create the table when create_table is true."
    )
    create_table: bool = Field(False, description="Create the table if it does not exist (needs columns).")
    chunk_size: int = Field(1000, ge=1, le=100_000, description="Rows per database batch.")
    conflict: ConflictSettings | None = Field(
        None, description="Two-way sync: when an existing row may be overwritten (upsert only)."
    )
    document: DocumentMapping | None = Field(
        None,
        description="Each record is a document with line items: the header goes to table, each line group "
        "to its own table, replaced whole on every load.",
    )

    @model_validator(mode="after")
    def _check_target(self) -> SqlTarget:
        if self.mode == "upsert" and not self.key:
            raise ValueError("mode 'upsert' needs 'key': the columns that identify a row")
        if self.create_table and not self.columns:
            raise ValueError("create_table needs 'columns' (column -> SQL type)")
        if self.columns is not None:
            missing = [k for k in self.key if k not in self.columns]
            if missing:
                raise ValueError(f"key columns {missing} are not listed in 'columns'")
        if self.conflict is not None and self.mode != "upsert":
            raise ValueError("'conflict' applies to mode 'upsert' only")
        if self.conflict is not None:
            clash = [c for c in self.conflict.app_owned if c in self.key]
            if clash:
                raise ValueError(f"conflict.app_owned lists key column(s) {clash}: keys are never updated")
        if self.document is not None:
            self._check_document(self.document)
        return self

    def header_schema(self) -> dict[str, Any] | None:
        """The declared fields of the header row (an import step's ``schema``); None: not declared."""
        return None

    def _check_document(self, document: DocumentMapping) -> None:
        if self.mode != "upsert":
            raise ValueError("document needs mode 'upsert': its lines are replaced by the header's key")
        if self.conflict is not None:
            raise ValueError("'conflict' rules do not apply with 'document' (its lines are always replaced)")
        header_schema = self.header_schema()
        # Values with ${...} are checked once resolved for a customer (at run time), not here.
        if has_reference(document.model_dump()) or has_reference(header_schema):
            return
        from b2b_integrations.formats.documents import document_spec

        try:
            document_spec(document.model_dump(), self.key, self.columns, self.create_table, header_schema)
        except ValueError as e:
            # The spec names keys inside the block ("lines[0].fields[3]: ..."): say which block.
            raise ValueError(
                f"document.{e}" if str(e).startswith(("lines[", "header_paths")) else str(e)
            ) from None
        declared = _schema_field_names(header_schema)
        unknown = sorted(set(document.header_paths) - declared) if declared is not None else []
        if unknown:
            raise ValueError(f"document.header_paths {unknown} are not fields of the schema")


def with_target(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the :class:`SqlTarget` options among them grouped into one ``target`` value: a step's
    options as the table-writing operators take them."""
    target = {name: options[name] for name in SqlTarget.model_fields if name in options}
    return {**{name: value for name, value in options.items() if name not in target}, "target": target}


def _schema_field_names(schema: Any) -> set[str] | None:
    """Names declared by a step's ``schema`` (None when the step has none: a load step)."""
    if not isinstance(schema, dict):
        return None
    fields = schema.get("fields")
    if isinstance(fields, dict):
        return set(fields)
    return {f.get("name") for f in fields or [] if isinstance(f, dict)}
