"""Documents with line items: one record (an order, an invoice) -> a header row and rows of line tables.

Pure logic, no I/O: :func:`document_spec` turns the ``document`` block of an import or load step into a
:class:`DocumentSpec`; :meth:`DocumentSpec.header_fields` gives the values the step's ``schema`` checks
(nested header values copied up by ``header_paths``, the line groups left out), and
:meth:`DocumentSpec.split` validates every line (and lines of lines) and returns the rows of each line
table, or every reason the document is refused. A document is accepted or refused whole: a bad line
refuses its document, so the tables never hold half an order.

Each line table's key is its parent's key (the header's ``key`` columns, copied into every line row)
plus the line's 1-based ``position`` in its group or its own ``key`` fields. Reasons name the line as
``lines[2]`` (the group's name and that position) and the field, e.g.
``lines[2]: field 'qty': 0 is below the minimum 1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from typing import Any

from b2b_integrations.formats.validation import FieldRule, RowSchema, schema_from_dict, validate_record

MAX_LINE_DEPTH = 3  # header -> lines -> lines of lines -> one more: deeper is a modelling question
# A line field is a schema field rule (whatever options those have) plus where it is and its bounds.
LINE_ONLY_KEYS = ("path", "minimum", "maximum")
LINE_FIELD_KEYS = frozenset({*(f.name for f in dataclass_fields(FieldRule)), *LINE_ONLY_KEYS})
SCHEMA_DEFAULT_KEYS = ("decimal_separator", "thousands_separator")


def parse_path(path: str) -> tuple[str, ...]:
    """``"a.b.@c"`` -> ``("a", "b", "@c")``; ``ValueError`` for an empty part."""
    if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
        raise ValueError(f"path {path!r} must be names separated by '.' (e.g. 'amount.@currency')")
    return tuple(path.split("."))


def _show(path: Sequence[str]) -> str:
    return ".".join(path)


@dataclass(frozen=True)
class LineField:
    """One column of a line table: where its value is in the line, and its bounds beyond the schema's."""

    name: str
    path: tuple[str, ...]
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class LineGroup:
    """A repeated group of a document (or of a line) and the table its items go to."""

    name: str
    path: tuple[str, ...]
    table: str
    schema: RowSchema
    fields: tuple[LineField, ...]
    parent_key: tuple[str, ...]
    """Columns copied from the parent row: the header's key, or the parent line's full key."""
    position: str | None
    own_key: tuple[str, ...]
    min_items: int = 0
    max_items: int | None = None
    columns: Mapping[str, str] | None = None
    """Column -> SQL type of the whole table (parent key, position, fields), when tables are created."""
    lines: tuple[LineGroup, ...] = ()

    @property
    def key(self) -> tuple[str, ...]:
        """The table's primary key: the parent's key plus the position or the line's own key."""
        return (*self.parent_key, *((self.position,) if self.position else self.own_key))

    @property
    def table_columns(self) -> tuple[str, ...]:
        """Row layout: parent key, position, then the declared fields in order."""
        own = tuple(f.name for f in self.fields)
        return (*self.parent_key, *((self.position,) if self.position else ()), *own)


@dataclass(frozen=True)
class DocumentRows:
    """One accepted document: its header row, its header key, and the rows of each line table."""

    header: tuple[Any, ...]
    key: tuple[Any, ...]
    lines: dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class DocumentSpec:
    """How one document becomes a header row and line rows (built by :func:`document_spec`)."""

    header_paths: Mapping[str, tuple[str, ...]]
    groups: tuple[LineGroup, ...]
    header_key: tuple[str, ...]

    def all_groups(self) -> list[LineGroup]:
        """Every line group, parents before their children."""
        found: list[LineGroup] = []
        pending = list(self.groups)
        while pending:
            group = pending.pop(0)
            found.append(group)
            pending.extend(group.lines)
        return found

    def header_fields(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record as the header ``schema`` sees it: values at ``header_paths`` copied to their column
        names, the line groups' top-level keys left out (they are rows of other tables)."""
        top = {group.path[0] for group in self.groups}
        fields = {k: v for k, v in record.items() if k not in top}
        for column, path in self.header_paths.items():
            fields[column] = _value_at(record, path)
        return fields

    def header_reasons(self, fields: Mapping[str, Any], schema: RowSchema) -> list[str]:
        """Declared header fields holding an object or a list (a schema would store their text)."""
        return [
            _not_single(rule.name, value, ())
            for rule in schema.fields
            if isinstance(value := fields.get(rule.name), dict | list)
        ]

    def read(
        self, record: Mapping[str, Any], schema: RowSchema, extra: Mapping[str, Any]
    ) -> tuple[DocumentRows | None, list[str]]:
        """One document checked whole: the header against the step's ``schema``, every line against its
        group. ``extra`` are the header columns the step adds (constants, the file name). Returns the
        rows, or None and every reason (header and lines together, so one report says all)."""
        fields = self.header_fields(record)
        clean, reasons = validate_record(fields, schema)
        reasons = [*reasons, *self.header_reasons(fields, schema)]
        header = {rule.name: (clean or {}).get(rule.name) for rule in schema.fields}
        header.update(extra)
        rows, line_reasons = self.split(header, record)
        reasons += line_reasons
        return (None if reasons else rows), reasons

    def split(
        self, header: Mapping[str, Any], record: Mapping[str, Any]
    ) -> tuple[DocumentRows | None, list[str]]:
        """Validate every line of ``record`` and build its rows; ``header`` is the header row by column
        (validated values plus constants). Returns ``(rows, [])`` or ``(None, every reason)``."""
        reasons: list[str] = []
        lines: dict[str, list[tuple[Any, ...]]] = {g.table: [] for g in self.all_groups()}
        parent = {column: header.get(column) for column in self.header_key}
        for group in self.groups:
            _split_group(group, record, parent, "", lines, reasons)
        if reasons:
            return None, reasons
        key = tuple(header.get(column) for column in self.header_key)
        return DocumentRows(tuple(header.values()), key, lines), []


def _split_group(
    group: LineGroup,
    container: Mapping[str, Any],
    parent: Mapping[str, Any],
    prefix: str,
    lines: dict[str, list[tuple[Any, ...]]],
    reasons: list[str],
) -> None:
    label = f"{prefix}{group.name}"
    items = _items_at(container, group.path)
    if len(items) < group.min_items:
        reasons.append(
            f"{label}: at least {group.min_items} line(s) required at '{_show(group.path)}', got {len(items)}"
        )
    if group.max_items is not None and len(items) > group.max_items:
        reasons.append(f"{label}: at most {group.max_items} line(s) allowed, got {len(items)}")
    seen: dict[tuple[Any, ...], int] = {}
    for position, item in enumerate(items, start=1):
        where = f"{label}[{position}]"
        if not isinstance(item, dict):
            reasons.append(f"{where}: expected an object, got {_kind(item)}")
            continue
        row = _line_row(group, item, where, reasons)
        if row is None:
            continue
        full = {**parent, **({group.position: position} if group.position else {}), **row}
        if group.own_key:
            own = tuple(full[k] for k in group.own_key)
            if own in seen:
                reasons.append(
                    f"{where}: key {dict(zip(group.own_key, own, strict=True))} repeats {label}[{seen[own]}]"
                )
                continue
            seen[own] = position
        lines[group.table].append(tuple(full[c] for c in group.table_columns))
        child_parent = {c: full[c] for c in group.key}
        for child in group.lines:
            _split_group(child, item, child_parent, f"{where}.", lines, reasons)


def _line_row(
    group: LineGroup, item: Mapping[str, Any], where: str, reasons: list[str]
) -> dict[str, Any] | None:
    """The line's values by column, checked field by field (every problem of the line is reported)."""
    clean: dict[str, Any] = {}
    found: list[str] = []
    for spec, (_, check) in zip(group.fields, group.schema.checkers, strict=True):
        value = _value_at(item, spec.path)
        if isinstance(value, dict | list):
            found.append(_not_single(spec.name, value, spec.path))
            continue
        clean[spec.name], problems = check(value)
        if problems:
            found.extend(problems)
        elif spec.minimum is not None or spec.maximum is not None:
            found.extend(_bounds(spec, clean[spec.name]))
    reasons.extend(f"{where}: {problem}" for problem in found)
    return None if found else clean


def _bounds(spec: LineField, value: Any) -> list[str]:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return []
    if spec.minimum is not None and value < spec.minimum:
        return [f"field {spec.name!r}: {value} is below the minimum {_number(spec.minimum)}"]
    if spec.maximum is not None and value > spec.maximum:
        return [f"field {spec.name!r}: {value} is above the maximum {_number(spec.maximum)}"]
    return []


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _not_single(name: str, value: Any, path: tuple[str, ...]) -> str:
    at = f" at '{_show(path)}'" if path and path != (name,) else ""
    hint = ""
    if isinstance(value, dict):
        parts = [k for k in value if k.startswith(("@", "#"))]
        if parts:
            base = _show(path or (name,))
            hint = f" (its parts: {', '.join(f'{base}.{p}' for p in parts)})"
    return f"field {name!r}: expected one value{at}, got {_kind(value)}{hint}"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _value_at(data: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` (None when absent); a list on the way is kept whole (one value expected)."""
    if len(path) == 1:  # the usual case, a field of the line itself
        return data.get(path[0]) if isinstance(data, dict) else None
    for part in path:
        if isinstance(data, list):
            return data
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _items_at(data: Any, path: Sequence[str]) -> list[Any]:
    """The items of a line group: a list, or one object (XML gives an object for a single element).

    Lists met on the way are walked into, so two ``<Lines>`` blocks give all their ``<Line>``s in order."""
    current = [data]
    for part in path:
        step: list[Any] = []
        for node in current:
            value = node.get(part) if isinstance(node, dict) else None
            if isinstance(value, list):
                step.extend(value)
            elif value is not None:
                step.append(value)
        current = step
    # An empty XML element (<line/>) reads as "": no line rather than a line that is not an object.
    return [item for item in current if not (isinstance(item, str) and not item.strip())]


# --------------------------------------------------------------------------- config


def document_spec(
    config: Mapping[str, Any],
    header_key: Sequence[str],
    header_columns: Mapping[str, str] | None = None,
    create_tables: bool = False,
    header_schema: Mapping[str, Any] | None = None,
) -> DocumentSpec:
    """Build a :class:`DocumentSpec` from a step's ``document`` block; ``ValueError`` naming the key.

    ``header_key`` are the header table's key columns (every line row carries them); ``header_columns``
    their SQL types when ``create_tables`` asks for line tables to be created too. The number format of
    the step's ``schema`` (``header_schema``: its separators) is the lines' default too: one document,
    one format.
    """
    if not header_key:
        raise ValueError("document needs the step's 'key': line rows are found and replaced by it")
    paths = config.get("header_paths") or {}
    header_paths = {}
    for column, path in paths.items():
        try:
            header_paths[column] = parse_path(path)
        except ValueError as exc:
            raise ValueError(f"header_paths.{column}: {exc}") from None
    raw_groups = config.get("lines") or []
    if not raw_groups:
        raise ValueError("document.lines: declare at least one line group")
    types = dict(header_columns or {})
    defaults = {k: v for k in SCHEMA_DEFAULT_KEYS if (v := (header_schema or {}).get(k)) is not None}
    groups = tuple(
        _group(raw, f"lines[{i}]", tuple(header_key), types, create_tables, defaults, depth=1)
        for i, raw in enumerate(raw_groups)
    )
    spec = DocumentSpec(header_paths, groups, tuple(header_key))
    tables = [g.table for g in spec.all_groups()]
    repeated = sorted({t for t in tables if tables.count(t) > 1})
    if repeated:
        raise ValueError(f"document.lines: table(s) {repeated} used by more than one line group")
    return spec


def _group(
    raw: Mapping[str, Any],
    where: str,
    parent_key: tuple[str, ...],
    parent_types: dict[str, str],
    create_tables: bool,
    defaults: dict[str, Any],
    depth: int,
) -> LineGroup:
    if depth > MAX_LINE_DEPTH:
        raise ValueError(f"{where}: lines nest at most {MAX_LINE_DEPTH} levels below the header")
    try:
        path = parse_path(raw.get("path", ""))
    except ValueError as exc:
        raise ValueError(f"{where}.path: {exc}") from None
    own_key = tuple(raw.get("key") or ())
    position = raw.get("position")
    if position is None and not own_key:
        position = "line_no"
    if position and own_key:
        raise ValueError(f"{where}: give 'position' or 'key' (the line's own id fields), not both")
    if position in parent_key:
        raise ValueError(
            f"{where}.position: column {position!r} is already in the parent's key; name another one"
        )
    fields = [_line_field(f, f"{where}.fields[{i}]") for i, f in enumerate(raw.get("fields") or [])]
    if not fields:
        raise ValueError(f"{where}.fields: declare at least one field")
    names = [f.name for f in fields]
    clash = sorted(set(names) & {*parent_key, *((position,) if position else ())})
    if clash:
        raise ValueError(f"{where}.fields: {clash} are already the parent's key or the position column")
    missing = [k for k in own_key if k not in names]
    if missing:
        raise ValueError(f"{where}.key: {missing} are not among its fields")
    # None is "not set" (a typed config dumps every key), so the schema's number format still applies.
    rules = [{k: v for k, v in f.items() if k not in LINE_ONLY_KEYS and v is not None} for f in raw["fields"]]
    try:
        schema = schema_from_dict({"fields": rules, **defaults})
    except ValueError as exc:
        raise ValueError(f"{where}.fields: {exc}") from None
    required_keys = [k for k in own_key if not next(r for r in schema.fields if r.name == k).required]
    if required_keys:
        raise ValueError(f"{where}.key: {required_keys} must be required fields (a key cannot be empty)")
    min_items, max_items = raw.get("min_items", 0) or 0, raw.get("max_items")
    if max_items is not None and max_items < min_items:
        raise ValueError(f"{where}: max_items {max_items} is below min_items {min_items}")
    group = LineGroup(
        name=raw.get("name") or _show(path),
        path=path,
        table=raw["table"],
        schema=schema,
        fields=tuple(fields),
        parent_key=parent_key,
        position=position,
        own_key=own_key,
        min_items=min_items,
        max_items=max_items,
    )
    columns = _table_columns(group, raw.get("columns"), parent_types, where) if create_tables else None
    types = {**parent_types, **(columns or {})}
    children = tuple(
        _group(child, f"{where}.lines[{i}]", group.key, types, create_tables, defaults, depth + 1)
        for i, child in enumerate(raw.get("lines") or [])
    )
    return replace(group, columns=columns, lines=children)


def _line_field(raw: Mapping[str, Any], where: str) -> LineField:
    unknown = sorted(set(raw) - LINE_FIELD_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(LINE_FIELD_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: needs a 'name' (the column)")
    try:
        path = parse_path(raw["path"]) if raw.get("path") else (name,)
    except ValueError as exc:
        raise ValueError(f"{where}.path: {exc}") from None
    bounds = (raw.get("minimum"), raw.get("maximum"))
    if any(b is not None for b in bounds) and raw.get("type") not in ("integer", "number"):
        raise ValueError(f"{where}: minimum/maximum need type integer or number")
    return LineField(name, path, *bounds)


def _table_columns(
    group: LineGroup, declared: Mapping[str, str] | None, parent_types: Mapping[str, str], where: str
) -> dict[str, str]:
    """SQL types of every column of a line table to create: the parent key's types come from the parent,
    the position is an INTEGER, the fields' types are declared in the group's ``columns``."""
    declared = dict(declared or {})
    types: dict[str, str] = {}
    for column in group.table_columns:
        if column in declared:
            types[column] = declared.pop(column)
        elif column in parent_types:
            types[column] = parent_types[column]
        elif column == group.position:
            types[column] = "INTEGER"
        else:
            raise ValueError(f"{where}.columns: no SQL type for column {column!r} (create_table is on)")
    if declared:
        raise ValueError(f"{where}.columns: {sorted(declared)} are not columns of this line table")
    return types
