"""Open a step's :class:`~b2b_integrations.config.sql_target.SqlTarget` for writing: the one place the
load, file import and API import steps turn their ``target`` into a row sink."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from b2b_integrations.config.options import validated
from b2b_integrations.config.sql_target import SqlTarget
from b2b_integrations.sinks.sql import RowSink, conflict_rule, prepare_target

if TYPE_CHECKING:
    from b2b_integrations.formats.documents import DocumentSpec


def target_options(target: SqlTarget | Mapping[str, Any]) -> dict[str, Any]:
    """An operator's ``target`` argument as the dict it keeps: Airflow renders the templates in a dict, and
    would leave a model's fields alone."""
    return target.model_dump() if isinstance(target, SqlTarget) else dict(target)


def sql_target(target: SqlTarget | Mapping[str, Any]) -> SqlTarget:
    """``target`` checked as the config checks it; ``ValueError`` naming the key otherwise."""
    return target if isinstance(target, SqlTarget) else validated(SqlTarget, dict(target))


def target_documents(
    target: SqlTarget, header_schema: Mapping[str, Any] | None = None
) -> DocumentSpec | None:
    """How the target splits a document into header and line rows; None when its records are plain rows."""
    if target.document is None:
        return None
    from b2b_integrations.formats.documents import document_spec

    return document_spec(
        target.document.model_dump(), target.key, target.columns, target.create_table, header_schema
    )


def open_target(
    conn: Any,
    dialect: str,
    placeholder: str,
    target: SqlTarget,
    fields: Sequence[str],
    documents: DocumentSpec | None = None,
) -> RowSink:
    """A sink writing ``fields`` into the target's table (created first when it asks), and the line tables
    of ``documents`` beside it."""
    sink = prepare_target(
        conn,
        dialect,
        placeholder,
        target.table,
        fields,
        target.key,
        target.mode == "upsert",
        target.columns if target.create_table else None,
        conflict_rule(target.conflict.model_dump() if target.conflict is not None else None),
    )
    if documents is None:
        return sink
    from b2b_integrations.sinks.documents import document_sink

    return document_sink(conn, dialect, placeholder, sink, documents, target.create_table)
