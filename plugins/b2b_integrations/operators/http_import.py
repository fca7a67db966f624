"""Scheduled data import: poll a third-party API, page by page, into a SQL table (incrementally)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from b2b_integrations.clients.http_api import ApiClient, auth_from_config, safe_url
from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.config.sql_target import SqlTarget
from b2b_integrations.errors import FatalStepError
from b2b_integrations.formats.documents import DocumentSpec
from b2b_integrations.formats.validation import RowSchema, schema_from_dict, validate_record
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.sinks.sql import RowSink, chunked, write_in_transaction
from b2b_integrations.sinks.target import open_target, sql_target, target_documents, target_options
from b2b_integrations.sources.incremental import IncrementalSync, incremental_from_config
from b2b_integrations.sources.pagination import (
    PageRequest,
    PageResponse,
    Paginator,
    paginator_from_config,
    select_records,
)
from b2b_integrations.sources.prefetch import prefetched
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.state import cursors

if TYPE_CHECKING:
    from airflow.sdk import Context

_PROGRESS_EVERY_SECONDS = 5.0


@dataclass
class _Progress:
    pages: int = 0
    fetched: int = 0
    loaded: int = 0
    quarantined: int = 0
    cursor: str | None = None


class HttpApiImportOperator(StepOperator):
    """
    Import the records of a paginated JSON API into a SQL table, only what changed since the last run.

    Pages are fetched one after another (``pagination``), their records taken at ``records_path`` and
    validated against ``row_schema``; good records are written to the target's table and bad ones
    to ``b2b_quarantine`` with their reasons. Everything, including the new incremental cursor (the greatest
    ``incremental.cursor_field`` seen), commits in one transaction at the end: a run that fails or is killed
    leaves the table and the cursor as they were, and its retry fetches the same changes again.

    :param http_conn_id: Airflow HTTP connection: base URL, and the secret for ``auth``.
    :param endpoint: Path (relative to the base URL) or absolute URL of the list endpoint. (templated)
    :param query: Extra query parameters. (templated)
    :param records_path: Dotted path to the records in each response, e.g. ``data.items``.
    :param pagination: ``{style: page_number|offset|cursor|next_url|link_header|none, ...}`` (see
        ``sources.pagination``).
    :param auth: ``{type: none|basic|api_key|bearer|oauth2_client_credentials, header, token_url, scope}``.
    :param incremental: ``{cursor_field, param, start}``; without it every run is a full sync.
    :param row_schema: ``{"fields": [...]}`` as for the file import, over each record's top-level keys.
    :param db_conn_id: Airflow connection of the destination database (holds cursor and quarantine too).
    :param target: The destination table and how to write it: a
        :class:`~b2b_integrations.config.sql_target.SqlTarget` or its options as a dict. (templated)
    :param constants: Extra columns with a fixed value on every row, e.g. ``{"customer_id": "acme"}``.
    :param timeout: Seconds per HTTP request.
    :param max_requests_per_second: Client-side rate limit (None: as fast as the API answers).
    :param retry_attempts: Tries per request for 429, 5xx, timeouts and unreadable bodies.
    :param retry_base_seconds: First backoff; it doubles per retry (with jitter), up to 30 s.
    """

    template_fields: Sequence[str] = ("endpoint", "query", "target")
    ui_color = "#eef5e4"

    def __init__(
        self,
        *,
        http_conn_id: str,
        endpoint: str,
        row_schema: dict[str, Any],
        db_conn_id: str,
        target: SqlTarget | Mapping[str, Any],
        query: dict[str, Any] | None = None,
        records_path: str | None = None,
        pagination: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
        incremental: dict[str, Any] | None = None,
        constants: dict[str, Any] | None = None,
        timeout: float = 30.0,
        max_requests_per_second: float | None = None,
        retry_attempts: int = 6,
        retry_base_seconds: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint
        self.query = query or {}
        self.records_path = records_path
        self.pagination = pagination
        self.auth = auth
        self.incremental = incremental
        self.row_schema = row_schema
        self.db_conn_id = db_conn_id
        self.target = target_options(target)
        self.constants = constants or {}
        self.timeout = timeout
        self.max_requests_per_second = max_requests_per_second
        self.retry_attempts = retry_attempts
        self.retry_base_seconds = retry_base_seconds

    def run_step(self, context: Context) -> dict[str, Any]:
        try:
            paginator = paginator_from_config(self.pagination)
            sync = incremental_from_config(self.incremental)
            schema = schema_from_dict(self.row_schema)
            auth = auth_from_config(self.auth)
            retry = RetryPolicy(attempts=self.retry_attempts, base_seconds=self.retry_base_seconds)
            target = sql_target(self.target)
            documents = target_documents(target, self.row_schema)
        except ValueError as e:
            raise FatalStepError(f"invalid http_import options: {e}") from e
        fields = [*(rule.name for rule in schema.fields), *self.constants]
        hook, dialect = get_db_hook(self.db_conn_id)
        state_key = self._state_key()
        run_id = str(context.get("run_id") or "manual") if context else "manual"
        progress = _Progress()
        with closing(hook.get_conn()) as conn:
            cursors.ensure_tables(conn)
            sink = open_target(conn, dialect, hook.placeholder, target, fields, documents)
            progress.cursor = cursors.read_cursor(conn, hook.placeholder, state_key) if sync else None
            client = ApiClient(
                self.http_conn_id,
                auth,
                retry,
                self.timeout,
                self.max_requests_per_second,
                self.where,
                self.log,
            )
            first = paginator.first(
                self.endpoint, {**self.query, **(sync.params(progress.cursor) if sync else {})}
            )
            self.log.info(
                "Fetching %s%s", safe_url(client.url(first), first.params),
                f" (changes since {progress.cursor})" if progress.cursor else " (full sync)" if sync else "",
            )  # fmt: skip
            writes = prefetched(
                self._page_writes(
                    client,
                    paginator,
                    first,
                    sync,
                    schema,
                    sink,
                    hook.placeholder,
                    progress,
                    run_id,
                    target.chunk_size,
                    documents,
                )
            )
            write_in_transaction(
                conn,
                sink,
                writes,
                before_commit=lambda cur: (
                    sync and cursors.write_cursor(cur, hook.placeholder, state_key, progress.cursor)
                ),
            )
        self.log.info(
            "Import summary: %d pages, %d records fetched, %d loaded, %d quarantined; cursor %s",
            progress.pages, progress.fetched, progress.loaded, progress.quarantined, progress.cursor,
        )  # fmt: skip
        return {
            "pages": progress.pages,
            "records_fetched": progress.fetched,
            "records_loaded": progress.loaded,
            "records_quarantined": progress.quarantined,
            "cursor": progress.cursor,
            "table": target.table,
        }

    def _page_writes(
        self,
        client: ApiClient,
        paginator: Paginator,
        request: PageRequest | None,
        sync: IncrementalSync | None,
        schema: RowSchema,
        sink: RowSink,
        placeholder: str,
        progress: _Progress,
        run_id: str,
        chunk_size: int,
        documents: DocumentSpec | None = None,
    ) -> Iterator[Callable[[Any], int]]:
        """Fetch page after page (in the prefetch thread) and turn each into one database write."""
        last_log = time.monotonic()
        while request is not None:
            body, headers, url = client.get_json(request)
            try:
                records = select_records(body, self.records_path)
            except ValueError as e:
                raise FatalStepError(f"{self.where}: {safe_url(url)}: {e}") from None
            progress.pages += 1
            rows, bad = self._check(records, schema, url, progress.fetched, documents)
            progress.fetched += len(records)
            progress.loaded += len(rows)
            progress.quarantined += len(bad)
            if sync:
                progress.cursor = sync.advance(progress.cursor, (r for r in records if isinstance(r, dict)))
            yield partial(_write_page, sink, chunk_size, rows, bad, placeholder, self._state_key(), run_id)
            request = paginator.next(PageResponse(request, url, body, headers, len(records)))
            if request is None or time.monotonic() - last_log >= _PROGRESS_EVERY_SECONDS:
                self.log.info(
                    "Page %d: %d records (%d fetched, %d quarantined so far)",
                    progress.pages, len(records), progress.fetched, progress.quarantined,
                )  # fmt: skip
                last_log = time.monotonic()

    def _check(
        self,
        records: list[Any],
        schema: RowSchema,
        url: str,
        before: int,
        documents: DocumentSpec | None = None,
    ) -> tuple[list[Any], list[tuple[str, int, list[str], Any]]]:
        """Rows to write (a document's rows when ``documents``) and the refused records with reasons."""
        rows: list[Any] = []
        bad: list[tuple[str, int, list[str], Any]] = []
        extra = tuple(self.constants.values())
        source = safe_url(url)
        for number, record in enumerate(records, start=before + 1):
            if not isinstance(record, dict):
                bad.append(
                    (source, number, [f"record is not a JSON object (got {type(record).__name__})"], record)
                )
                continue
            if documents is not None:
                document, reasons = documents.read(record, schema, self.constants)
                if document is None:
                    bad.append((source, number, reasons, record))
                else:
                    rows.append(document)
                continue
            clean, reasons = validate_record(record, schema)
            if clean is None:
                bad.append((source, number, reasons, record))
            else:
                rows.append((*(clean[rule.name] for rule in schema.fields), *extra))
        return rows, bad

    def _state_key(self) -> cursors.StepKey:
        return cursors.StepKey(self.customer_id, self.integration, self.flow, self.task_id)


def _write_page(
    sink: RowSink,
    chunk_size: int,
    rows: list[Any],
    bad: list[tuple[str, int, list[str], Any]],
    placeholder: str,
    key: cursors.StepKey,
    run_id: str,
    cursor: Any,
) -> int:
    for chunk in chunked(rows, chunk_size):
        sink.write(cursor, chunk)
    cursors.quarantine_records(cursor, placeholder, key, run_id, bad)
    return len(rows)
