"""Step kinds: one options model per kind, chosen by ``kind``.

This module is the step-kind registry. Each model names the operator that runs it (a dotted path, imported
only when a DAG is built) and whether it is available in this version. Adding a step kind means adding a
model here and listing it in ``STEP_MODELS``; the config schema, the validator and the DAG factory follow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator

from b2b_integrations.config.base import Ident, StrictModel
from b2b_integrations.config.format_options import FileFormat
from b2b_integrations.config.http_options import AuthOptions, EventTarget, IncrementalOptions
from b2b_integrations.config.references import has_reference
from b2b_integrations.config.render_options import RenderOptions
from b2b_integrations.config.row_schema import RowSchemaOptions
from b2b_integrations.config.sql_target import SQL_COLUMN_PATTERN, SqlTarget, with_target
from b2b_integrations.delivery.config import NamedTargets


class StepBase(StrictModel):
    """Fields every step has."""

    id: Ident = Field(description="Task id of the step, unique within the flow.")
    description: str = Field("", description="Shown in the generated DAG docs.")
    retries: int | None = Field(None, ge=0, le=20, description="Overrides the flow's retries for this step.")

    operator: ClassVar[str]
    base_fields: ClassVar[frozenset[str]] = frozenset({"id", "description", "retries", "kind"})
    # Option name -> operator argument, for options naming a connection *slot* of the template; the
    # operator receives the customer's Airflow connection id under the argument name.
    connection_fields: ClassVar[dict[str, str]] = {}

    # Computed once per template step, not once per customer (planning 1,000 customers reuses them).
    @cached_property
    def step_options(self) -> dict[str, Any]:
        """The kind-specific options: everything but id, kind, description and retries."""
        return {k: v for k, v in self.model_dump().items() if k not in self.base_fields}

    def connection_slots(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """(key path within the step, slot name) of every connection slot the step names."""
        for field in self.connection_fields:
            yield (field,), getattr(self, field)

    def bind_connections(self, arguments: dict[str, Any], connections: Mapping[str, str]) -> None:
        """Replace the connection slots in ``arguments`` by the customer's Airflow connection ids.

        Kinds with slots nested in their options (e.g. a list of delivery targets) override this.
        """
        for field, argument in self.connection_fields.items():
            arguments.pop(field)
            arguments[argument] = connections.get(getattr(self, field))

    def operator_arguments(self, options: dict[str, Any]) -> dict[str, Any]:
        """The operator's keyword arguments from the step's (resolved) options, a new dict.

        Kinds whose operator takes some options as one value (a table target) override this.
        """
        return dict(options)

    @cached_property
    def config_option_keys(self) -> frozenset[str]:
        """Options whose value references ${config.*}."""
        return frozenset(k for k, v in self.step_options.items() if has_reference(v, "config"))


class TransformStep(StepBase):
    """Run a Python callable (pandas DataFrame in, DataFrame or list of dicts out)."""

    kind: Literal["transform"]
    callable: str = Field(
        pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*[.:][A-Za-z_]\w*$",
        description="Dotted path 'package.module.function' from an allow-listed package.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the callable.")

    operator: ClassVar[str] = "b2b_integrations.operators.transform.TransformOperator"


class SqlTargetStep(SqlTarget, StepBase):
    """A step that writes rows into a SQL table: its :class:`SqlTarget` options reach the operator as one
    ``target`` argument."""

    def operator_arguments(self, options: dict[str, Any]) -> dict[str, Any]:
        return with_target(options)


class LoadStep(SqlTargetStep):
    """Write the upstream step's records into a SQL table (insert, or upsert by key)."""

    kind: Literal["load"]
    connection: Ident = Field(description="Connection slot of the target database.")

    operator: ClassVar[str] = "b2b_integrations.operators.sql_load.SqlLoadOperator"
    connection_fields: ClassVar[dict[str, str]] = {"connection": "conn_id"}


class RecordImportStep(SqlTargetStep):
    """Fields shared by steps that validate outside records and load them (file and API imports)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    row_schema: RowSchemaOptions = Field(
        alias="schema",
        description="fields: [{name, type, required, allowed, pattern, max_length, format, decimal_separator, "
        "thousands_separator}], extra_fields, decimal_separator, thousands_separator.",
    )
    db_connection: Ident = Field(
        description="Connection slot of the destination database (also holds the import's state)."
    )
    constants: dict[Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)], Any] = Field(
        default_factory=dict, description="Columns with a fixed value on every row, e.g. customer_id."
    )

    def header_schema(self) -> dict[str, Any] | None:
        return self.row_schema.model_dump()


# A leaf of an option block may hold a ${...} reference instead of its value; the block is validated again
# with the reference filled in (config/validate.py), so the value's own type is checked there.
ParamName = Annotated[str, Field(min_length=1)]


def _integer_or_reference(minimum: int | None) -> Any:
    """An integer (at least ``minimum``) or a ``${...}`` reference, refused with one message naming both."""
    bound = f" >= {minimum}" if minimum is not None else ""

    def check(value: Any) -> Any:
        if isinstance(value, str) and "${" in value:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            raise ValueError(f"expected an integer{bound} or a ${{...}} reference, got {value!r}")
        return value

    integer: dict[str, Any] = {"type": "integer"} | ({"minimum": minimum} if minimum is not None else {})
    schema = {"anyOf": [integer, {"type": "string", "pattern": r"\$\{"}]}
    return Annotated[int | str, PlainValidator(check), WithJsonSchema(schema)]


PositiveInt = _integer_or_reference(1)
AnyInt = _integer_or_reference(None)


class NoPagination(StrictModel):
    """A single request."""

    style: Literal["none"]


class PageNumberPagination(StrictModel):
    """``?page=1&per_page=100``, then 2, 3 ... until a short or empty page (or ``total_pages_path``)."""

    style: Literal["page_number"]
    page_param: ParamName = Field("page", description="Query parameter holding the page number.")
    size_param: ParamName | None = Field("per_page", description="Query parameter holding the page size.")
    page_size: PositiveInt = Field(100, description="Records asked for per page.")
    first_page: AnyInt = Field(1, description="Number of the first page (0 or 1).")
    total_pages_path: str | None = Field(None, description="Dotted path of the page count in the body.")


class OffsetPagination(StrictModel):
    """``?offset=0&limit=100``, then 100, 200 ... until a short or empty page (or ``total_path``)."""

    style: Literal["offset"]
    offset_param: ParamName = Field("offset", description="Query parameter holding the offset.")
    limit_param: ParamName = Field("limit", description="Query parameter holding the page size.")
    limit: PositiveInt = Field(100, description="Records asked for per page.")
    total_path: str | None = Field(None, description="Dotted path of the record count in the body.")


class CursorPagination(StrictModel):
    """``?cursor=<token>``, the token read from the body at ``next_cursor_path``, until it is empty."""

    style: Literal["cursor"]
    cursor_param: ParamName = Field("cursor", description="Query parameter holding the cursor.")
    next_cursor_path: str = Field("next_cursor", min_length=1, description="Dotted path of the next cursor.")
    limit_param: ParamName | None = Field("limit", description="Query parameter holding the page size.")
    limit: PositiveInt = Field(100, description="Records asked for per page.")


class NextUrlPagination(StrictModel):
    """The next page's URL read from the body at ``next_url_path``, until it is empty."""

    style: Literal["next_url"]
    next_url_path: str = Field("next", min_length=1, description="Dotted path of the next page's URL.")
    limit_param: ParamName | None = Field(None, description="Query parameter holding the page size.")
    limit: PositiveInt = Field(100, description="Records asked for per page (with limit_param).")


class LinkHeaderPagination(StrictModel):
    """The ``rel="next"`` URL of the ``Link`` header (RFC 8288), until there is none."""

    style: Literal["link_header"]
    rel: str = Field("next", min_length=1, description="Relation of the next page's link.")
    size_param: ParamName | None = Field(None, description="Query parameter holding the page size.")
    page_size: PositiveInt = Field(100, description="Records asked for per page (with size_param).")


# The typed form of ``sources.pagination.PAGINATORS``: one model per style, so a typo in an option is an
# error at its own key path. tests/unit/test_http_sources.py keeps their fields and defaults equal.
PAGINATION_MODELS: tuple[type[StrictModel], ...] = (
    NoPagination,
    PageNumberPagination,
    OffsetPagination,
    CursorPagination,
    NextUrlPagination,
    LinkHeaderPagination,
)
Pagination = Annotated[Union[PAGINATION_MODELS], Field(discriminator="style")]  # type: ignore[valid-type]  # noqa: UP007


class HttpImportStep(RecordImportStep):
    """Poll a third-party JSON API page by page (incremental) and load the records into a SQL table."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["http_import"]
    connection: Ident = Field(description="Connection slot of the API: base URL and the secret for auth.")
    endpoint: str = Field(min_length=1, description="Path of the list endpoint (or an absolute URL).")
    query: dict[str, Any] = Field(default_factory=dict, description="Extra query parameters.")
    records_path: str | None = Field(None, description="Dotted path to the records, e.g. data.items.")
    pagination: Pagination = Field(
        default_factory=lambda: NoPagination(style="none"),
        description="style: page_number | offset | cursor | next_url | link_header | none, and its options.",
    )
    auth: AuthOptions = Field(
        default_factory=lambda: AuthOptions(type="none"),
        description="How the connection's secret is used: type none | basic | api_key | bearer | "
        "oauth2_client_credentials, with header, token_url, scope.",
    )
    incremental: IncrementalOptions | None = Field(
        None, description="cursor_field (e.g. updated_at), param (e.g. updated_since), start (first run)."
    )
    timeout: float = Field(30, gt=0, le=600, description="Seconds per HTTP request.")
    max_requests_per_second: float | None = Field(None, gt=0, description="Client-side rate limit.")
    retry_attempts: int = Field(6, ge=1, le=20, description="Tries per request on 429, 5xx and timeouts.")
    retry_base_seconds: float = Field(0.5, ge=0, le=60, description="First retry wait; doubles, with jitter.")

    operator: ClassVar[str] = "b2b_integrations.operators.http_import.HttpApiImportOperator"
    connection_fields: ClassVar[dict[str, str]] = {
        "connection": "http_conn_id",
        "db_connection": "db_conn_id",
    }

    @model_validator(mode="after")
    def _check_options(self) -> HttpImportStep:
        from b2b_integrations.formats.validation import schema_from_dict

        # The block checked itself; converting its allowed values to their types needs the whole rule.
        schema = self.row_schema.model_dump()
        if not has_reference(schema):
            schema_from_dict(schema)
        return self


class FileImportOptions(RecordImportStep):
    """Options of every file import, whatever folder the files sit in (sftp_import, object_import)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    pattern: str = Field("*", description="Glob the file names must match, e.g. '*.csv'.")
    regex: str | None = Field(None, description="Regular expression the whole file name must match.")
    file_format: FileFormat = Field(
        alias="format",
        description="format (csv, tsv, json, ndjson, xml, xlsx), encoding, delimiter, quotechar, header, "
        "columns, rename, record_path, sheet.",
    )
    source_file_column: Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)] | None = Field(
        None, description="Column that receives the file name."
    )
    after_load: Literal["move", "delete"] = Field("move", description="What happens to a loaded file.")
    processed_folder: str = Field("processed", pattern=r"^[A-Za-z0-9._-]+$")
    failed_folder: str = Field("failed", pattern=r"^[A-Za-z0-9._-]+$")
    quarantine_folder: str = Field("quarantine", pattern=r"^[A-Za-z0-9._-]+$")
    settle_seconds: float = Field(5, ge=0, le=600, description="Files changing within this time are skipped.")
    max_files: int | None = Field(None, ge=1, description="At most this many files per run.")

    @model_validator(mode="after")
    def _check_options(self) -> FileImportOptions:
        from b2b_integrations.formats.validation import schema_from_dict

        # The block checked itself; converting its allowed values to their types needs the whole rule.
        schema = self.row_schema.model_dump()
        if not has_reference(schema):
            schema_from_dict(schema)
        nested = ("xml", "json", "ndjson")
        fmt = self.file_format.format
        if self.document is not None and not has_reference(fmt) and fmt not in nested:
            raise ValueError(f"document needs a format whose records nest ({', '.join(nested)})")
        return self


class SftpImportStep(FileImportOptions):
    """Import new files from an SFTP folder: parse, validate, load, then move or delete each file."""

    kind: Literal["sftp_import"]
    connection: Ident = Field(description="Connection slot of the SFTP server.")
    folder: str = Field(min_length=1, description="Remote folder polled for new files.")

    operator: ClassVar[str] = "b2b_integrations.operators.sftp_import.SftpFileImportOperator"
    connection_fields: ClassVar[dict[str, str]] = {
        "connection": "sftp_conn_id",
        "db_connection": "db_conn_id",
    }


class ObjectImportStep(FileImportOptions):
    """Import new files from object storage (s3://, gs://, file://): the same rules as sftp_import, in a
    folder under the root its connection names."""

    kind: Literal["object_import"]
    connection: Ident = Field(
        description="Connection slot of the store (aws for s3://, google_cloud_platform for gs://); its extra "
        "b2b_root (a URL, {customer} replaced by the customer id) is the only place the import may read."
    )
    folder: str = Field(
        "",
        description="Folder under the connection's root, relative (no leading '/', no '.' or '..' segment), "
        "e.g. orders/inbox; empty for the root itself.",
    )

    operator: ClassVar[str] = "b2b_integrations.operators.object_import.ObjectStorageImportOperator"
    connection_fields: ClassVar[dict[str, str]] = {
        "connection": "storage_conn_id",
        "db_connection": "db_conn_id",
    }

    @model_validator(mode="after")
    def _check_folder(self) -> ObjectImportStep:
        from b2b_integrations.sources.files import relative_segments

        if not has_reference(self.folder):  # a filled-in reference is checked again at run time
            relative_segments(self.folder)
        return self


class MailboxStep(StepBase):
    """Read new messages of an IMAP folder into records (one per message, or one per attachment saved as a
    file); each message is moved to the processed folder once staged, never staged twice by Message-ID."""

    kind: Literal["mailbox"]
    connection: Ident = Field(
        description="Connection slot of the mailbox (imap: host, port, login, password)."
    )
    folder: str = Field("INBOX", pattern=r"^[A-Za-z0-9._/-]+$", description="IMAP folder read.")
    processed_folder: str = Field(
        "Processed", pattern=r"^[A-Za-z0-9._/-]+$", description="Where staged messages are moved."
    )
    emit: Literal["messages", "attachments"] = Field(
        "messages", description="One record per message, or per attachment (with the saved file's path)."
    )
    attachment_pattern: str = Field("*", min_length=1, description="Glob the attachment names must match.")
    max_messages: int = Field(100, ge=1, le=5000, description="At most this many messages per run.")

    operator: ClassVar[str] = "b2b_integrations.operators.mailbox.MailboxOperator"
    connection_fields: ClassVar[dict[str, str]] = {"connection": "imap_conn_id"}


REPORT_BUILTIN_PARAMETERS = (
    "period_start",
    "period_end",
    "ds",
    "logical_date",
    "customer_id",
    "integration",
    "flow",
)


class ReportSource(StrictModel):
    """Where a report's rows come from: a SQL query on a database connection slot, streamed in chunks."""

    connection: Ident = Field(description="Connection slot of the database the query runs on.")
    sql: str = Field(
        min_length=1,
        description="Query with :name bind parameters (never formatted in). Built in: "
        + ", ".join(f":{p}" for p in REPORT_BUILTIN_PARAMETERS)
        + ".",
    )
    parameters: dict[Annotated[str, Field(pattern=SQL_COLUMN_PATTERN)], Any] = Field(
        default_factory=dict, description="More bind parameters, e.g. {region: '${config.region}'}."
    )
    chunk_rows: int = Field(50_000, ge=100, le=1_000_000, description="Rows read and rendered at a time.")

    @model_validator(mode="after")
    def _check_parameters(self) -> ReportSource:
        clash = sorted(set(self.parameters) & set(REPORT_BUILTIN_PARAMETERS))
        if clash:
            raise ValueError(f"source.parameters {clash} are built-in parameters; use other names")
        if not has_reference(self.sql):
            from b2b_integrations.reports.query import bind_names

            known = {*REPORT_BUILTIN_PARAMETERS, *self.parameters}
            unknown = [f":{name}" for name in bind_names(self.sql) if name not in known]
            if unknown:
                raise ValueError(
                    f"source.sql uses {unknown}, which have no value: declare them under source.parameters "
                    f"or use a built-in one ({', '.join(':' + p for p in REPORT_BUILTIN_PARAMETERS)})"
                )
        return self


class ReportExportStep(StepBase):
    """Render a report file (PDF, CSV, XML, Excel) from a SQL query, or from the upstream step's records."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["report_export"]
    report: Ident = Field(description="Report identifier: used in file names and by the delivery ledger.")
    report_format: Literal["pdf", "csv", "xml", "xlsx"] = Field(alias="format", description="File format.")
    file_name: str = Field(
        "{customer}_{report}_{ds}.{format}",
        description="Placeholders: {customer}, {integration}, {flow}, {report}, {ds}, {ds_nodash}, "
        "{period_start}, {period_end} (dates; e.g. {period_start:%Y-%m}), {format}. One safe file name.",
    )
    source: ReportSource | None = Field(
        None, description="Omitted: the upstream step's records are the data."
    )
    transform: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*[.:][A-Za-z_]\w*$",
        description="Callable applied to each chunk (DataFrame in, DataFrame or list of dicts out), "
        "from an allow-listed package.",
    )
    transform_options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for it.")
    empty: Literal["send", "skip"] = Field(
        "send", description="No rows: send an empty report (with empty_note), or skip this and later steps."
    )
    empty_note: str = Field("", max_length=2000, description="Shown in an empty PDF report.")
    period: Literal["interval", "day", "week", "month", "quarter", "year"] = Field(
        "interval",
        description="interval: the run's data interval; day..year: the last full one ending at the run's "
        "interval end (cron schedules have zero-length intervals unless create_cron_data_intervals is on).",
    )
    period_timezone: str = Field("UTC", description="Time zone of calendar periods, e.g. Europe/Berlin.")
    customer_name: str = Field("${customer.name}", description="Customer name shown in the PDF header.")
    render: RenderOptions = Field(
        default_factory=RenderOptions,
        description="How the report looks: title, columns, summary, chart, logo, page, and csv/xml/xlsx options.",
    )

    operator: ClassVar[str] = "b2b_integrations.operators.report_export.ReportExportOperator"

    def connection_slots(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        if self.source is not None:
            yield ("source", "connection"), self.source.connection

    def bind_connections(self, arguments: dict[str, Any], connections: Mapping[str, str]) -> None:
        # The slot is nested in `source`; the operator gets the customer's connection id beside it.
        source = arguments.get("source")
        if isinstance(source, dict) and "connection" in source:
            arguments["db_conn_id"] = connections.get(source.pop("connection"))

    @model_validator(mode="after")
    def _check_options(self) -> ReportExportStep:
        from b2b_integrations.reports.config import check_file_name, default_title, report_spec_from_config
        from b2b_integrations.reports.period import check_timezone

        check_file_name(self.file_name)
        check_timezone(self.period_timezone)
        # The block checked its own keys; what depends on the format (XML names of columns) is checked here.
        if not has_reference(self.render.model_dump()):
            report_spec_from_config(self.report_format, self.render, default_title=default_title(self.report))
        return self


class DeliverStep(StepBase):
    """Send the upstream report file to each target (SFTP, email, Slack, HTTP, local folder or object
    storage), once per report and period: a delivery ledger in ``db_connection`` skips targets that have it.
    """

    kind: Literal["deliver"]
    db_connection: Ident = Field(description="Connection slot of the database holding the delivery ledger.")
    targets: NamedTargets = Field(
        description="Where the file goes: each {type: sftp|email|slack|http|local, name, connection, ...}. "
        "Unnamed targets are named after their type (sftp, then sftp_2, ...); names identify deliveries."
    )

    operator: ClassVar[str] = "b2b_integrations.operators.deliver.DeliverOperator"
    connection_fields: ClassVar[dict[str, str]] = {"db_connection": "db_conn_id"}

    def connection_slots(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        yield from super().connection_slots()
        for index, target in enumerate(self.targets):
            if target.connection is not None:
                yield ("targets", index, "connection"), target.connection

    def bind_connections(self, arguments: dict[str, Any], connections: Mapping[str, str]) -> None:
        """The ledger's slot as ``db_conn_id``; each target's slot as ``target_conn_ids[target name]``.

        The slot names stay in ``targets``: the operator reads the ids from the mapping, so ``targets`` can
        be re-resolved from the run's params (``config_refs``) without losing the binding.
        """
        super().bind_connections(arguments, connections)
        arguments["target_conn_ids"] = {
            target.target_name: connections.get(target.connection)
            for target in self.targets
            if target.connection is not None
        }


class DeliverEventsStep(StepBase):
    """Send each event of the run to the customer's third party (signed webhook or Redis pub/sub): once per
    event and target, in order per key, with retries, and dead-lettered when the retry budget runs out."""

    kind: Literal["deliver_events"]
    db_connection: Ident = Field(description="Connection slot of the database keeping the delivery ledger.")
    target: EventTarget = Field(
        description="{type: webhook, connection, endpoint, timeout}, {type: api, connection, method, endpoint "
        "('{data.id}' placeholders), body (their field -> our dotted path), body_constants, auth, timeout} or "
        "{type: redis, connection, channel}; optional name (the ledger's target id, default the type)."
    )
    key: str = Field("data.id", min_length=1, description="Dotted path of the per-key ordering field.")
    id_field: str = Field("id", min_length=1, description="Field holding the event id (the webhook-id).")
    time_field: str = Field("occurred_at", min_length=1, description="Field holding the event time.")
    coalesce: bool = Field(False, description="Send only the newest event per key of a run.")
    concurrency: int = Field(4, ge=1, le=32, description="Keys delivered in parallel.")
    retry_attempts: int = Field(5, ge=1, le=20, description="Tries per event before it is dead-lettered.")
    retry_base_seconds: float = Field(0.5, ge=0, le=60, description="First retry wait; doubles, with jitter.")
    retry_max_seconds: float = Field(30, ge=0, le=600, description="Longest wait between tries.")

    operator: ClassVar[str] = "b2b_integrations.operators.deliver_events.DeliverEventsOperator"
    connection_fields: ClassVar[dict[str, str]] = {"db_connection": "db_conn_id"}

    def connection_slots(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        yield from super().connection_slots()
        yield ("target", "connection"), self.target.connection

    def bind_connections(self, arguments: dict[str, Any], connections: Mapping[str, str]) -> None:
        # Beside the target, not inside it: `target` may be re-resolved from the run's params (config_refs)
        # at run time, which would put the slot name back.
        super().bind_connections(arguments, connections)
        arguments["target_conn_id"] = connections.get(self.target.connection)


class HttpCallStep(StepBase):
    """Call a third-party HTTP API once per input record (or once per run) and pass its answers on.

    The first step of a synchronous flow gets the caller's request body as its one record. A status listed
    in ``failure_statuses`` is the third party saying no: the step fails without retries and a sync caller
    gets the reason found at ``failure_message_path``.
    """

    kind: Literal["http_call"]
    connection: Ident = Field(description="Connection slot of the API: base URL and the secret for auth.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field("POST", description="HTTP method.")
    endpoint: str = Field(
        min_length=1, description="Path (or absolute URL); '{field}' takes the record's value, URL-encoded."
    )
    per: Literal["record", "run"] = Field(
        "record", description="One call per input record, or one per run with every record in the body."
    )
    body: dict[str, str] | None = Field(
        None, description="Their field (dotted for nesting) -> our field (dotted path); default: the record."
    )
    body_constants: dict[str, Any] = Field(default_factory=dict, description="Their field -> a fixed value.")
    batch_key: str | None = Field(
        None,
        description="per: run only: the key holding the list of records (default: the body is the list).",
    )
    query: dict[str, Any] = Field(default_factory=dict, description="Fixed query parameters.")
    response_fields: dict[str, str] = Field(
        default_factory=dict, description="Our field -> dotted path in their JSON answer, passed on."
    )
    keep_fields: list[str] | None = Field(
        None, description="Input fields passed on with the response fields (default: all of them)."
    )
    failure_statuses: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=list, description="Statuses meaning the third party said no (business failure)."
    )
    failure_message_path: str | None = Field(
        None, description="Dotted path of the reason in a refusal's JSON body (shown to sync callers)."
    )
    failure_code_path: str | None = Field(
        None, description="Dotted path of a refusal's code, e.g. decline_code."
    )
    failure_answer_status: int | None = Field(
        None,
        ge=400,
        le=599,
        description="Status a sync caller gets for a refusal (default: the third party's).",
    )
    idempotency_header: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Header carrying a key that is the same on every retry of a call (e.g. Idempotency-Key); "
        "POST and PATCH are retried only with it.",
    )
    auth: AuthOptions = Field(
        default_factory=lambda: AuthOptions(type="none"),
        description="How the connection's secret is used: type none | basic | api_key | bearer | "
        "oauth2_client_credentials, with header, token_url, scope.",
    )
    timeout: float = Field(30, gt=0, le=600, description="Seconds per HTTP request.")
    max_requests_per_second: float | None = Field(None, gt=0, description="Client-side rate limit.")
    retry_attempts: int = Field(3, ge=1, le=20, description="Tries per call on 429, 5xx and timeouts.")
    retry_base_seconds: float = Field(0.5, ge=0, le=60, description="First retry wait; doubles, with jitter.")
    result_limit: int = Field(
        100, ge=0, le=10_000, description="Output records also returned as the step's result (a sync answer)."
    )

    operator: ClassVar[str] = "b2b_integrations.operators.http_call.HttpCallOperator"
    connection_fields: ClassVar[dict[str, str]] = {"connection": "http_conn_id"}

    @model_validator(mode="after")
    def _check_call(self) -> HttpCallStep:
        from b2b_integrations.sources.http_call import placeholders

        if self.per == "run" and placeholders(self.endpoint):
            raise ValueError("per: run makes one call for all records: the endpoint cannot use '{field}'")
        if self.batch_key is not None and self.per != "run":
            raise ValueError("batch_key applies to per: run only")
        return self


STEP_MODELS: tuple[type[StepBase], ...] = (
    TransformStep,
    LoadStep,
    HttpImportStep,
    SftpImportStep,
    ObjectImportStep,
    HttpCallStep,
    ReportExportStep,
    DeliverStep,
    DeliverEventsStep,
    MailboxStep,
)

STEP_KINDS: dict[str, type[StepBase]] = {
    m.model_fields["kind"].annotation.__args__[0]: m for m in STEP_MODELS
}

# Built from STEP_MODELS so the registry stays the one list of step kinds.
Step = Annotated[Union[STEP_MODELS], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
