"""Call a third-party HTTP API once per record (or once per run) and pass its answers to the next step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from b2b_integrations.clients.http_api import auth_from_config
from b2b_integrations.clients.http_call import CallResponse, HttpCallClient, HttpCallFailed
from b2b_integrations.errors import FatalStepError
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.sources import http_call as calls
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.staging import StagedRecords, read_dicts, stage_path, write_dicts
from b2b_integrations.sync.outcome import PUBLIC_ERROR_KEY, StepRejected, public_error_of
from b2b_integrations.sync.protocol import sync_request

if TYPE_CHECKING:
    from airflow.sdk import Context


class HttpCallOperator(StepOperator):
    """
    Make one HTTP call per input record (``per="record"``) or one for all of them (``per="run"``), and stage
    an output record per call for the next step: the kept input fields plus ``response_fields`` picked from
    the answer.

    Input: the upstream step's records; for a flow's first step, the request body of a synchronous call
    (one record), else the records of the triggering asset events and inbox messages (webhooks), else one
    empty record (a scheduled call makes one request).

    A status in ``failure_statuses`` is the third party saying no: the step fails at once (no retries) with
    :class:`~b2b_integrations.sync.outcome.StepRejected`, whose message (read at ``failure_message_path``) and
    status a synchronous caller is given. Other non-2xx statuses fail the step as technical errors. Either
    way the step leaves what a caller may be told in XCom (``b2b_public_error``) before failing.

    Retries: timeouts, 429 and 5xx are retried with backoff, but POST and PATCH only when
    ``idempotency_header`` is set: the header then carries a key that is the same on every try of a call
    (and across task retries), so the third party can tell a repeat from a new request.

    :param http_conn_id: Airflow HTTP connection: base URL, and the secret for ``auth``.
    :param endpoint: Path or absolute URL; ``{field}`` is replaced by the record's value. (templated)
    :param method: GET, POST, PUT, PATCH or DELETE.
    :param per: ``record`` or ``run``.
    :param body: Their field (dotted for nesting) -> our field (dotted path); None sends the whole record.
    :param body_constants: Their field -> fixed value. (templated)
    :param batch_key: ``per="run"``: the key holding the list of request bodies (None: the body is the list).
    :param query: Fixed query parameters. (templated)
    :param response_fields: Our field -> dotted path in their JSON answer.
    :param keep_fields: Input fields passed on (None: all).
    :param failure_statuses: Statuses meaning a business refusal.
    :param failure_message_path: Where a refusal's reason is in its JSON body.
    :param failure_code_path: Where a refusal's code is in its JSON body.
    :param failure_answer_status: The status a synchronous caller gets for a refusal (default: theirs).
    :param idempotency_header: Header for the per-call idempotency key, e.g. ``Idempotency-Key``.
    :param auth: ``{type: none|basic|api_key|bearer|oauth2_client_credentials, header, token_url, scope}``.
    :param timeout: Seconds per request.
    :param max_requests_per_second: Client-side rate limit.
    :param retry_attempts: Tries per call for transient failures.
    :param retry_base_seconds: First backoff; doubles per retry (with jitter), up to 30 s.
    :param result_limit: How many output records are also returned in the XCom's ``result``.
    """

    template_fields: Sequence[str] = ("endpoint", "query", "body_constants")
    ui_color = "#fdf1e1"

    def __init__(
        self,
        *,
        http_conn_id: str,
        endpoint: str,
        method: str = "POST",
        per: str = "record",
        body: dict[str, str] | None = None,
        body_constants: dict[str, Any] | None = None,
        batch_key: str | None = None,
        query: dict[str, Any] | None = None,
        response_fields: dict[str, str] | None = None,
        keep_fields: Sequence[str] | None = None,
        failure_statuses: Sequence[int] = (),
        failure_message_path: str | None = None,
        failure_code_path: str | None = None,
        failure_answer_status: int | None = None,
        idempotency_header: str | None = None,
        auth: dict[str, Any] | None = None,
        timeout: float = 30.0,
        max_requests_per_second: float | None = None,
        retry_attempts: int = 3,
        retry_base_seconds: float = 0.5,
        result_limit: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint
        self.method = method
        self.per = per
        self.body = body
        self.body_constants = body_constants or {}
        self.batch_key = batch_key
        self.query = query or {}
        self.response_fields = response_fields or {}
        self.keep_fields = list(keep_fields) if keep_fields is not None else None
        self.failure_statuses = list(failure_statuses)
        self.failure_message_path = failure_message_path
        self.failure_code_path = failure_code_path
        self.failure_answer_status = failure_answer_status
        self.idempotency_header = idempotency_header
        self.auth = auth
        self.timeout = timeout
        self.max_requests_per_second = max_requests_per_second
        self.retry_attempts = retry_attempts
        self.retry_base_seconds = retry_base_seconds
        self.result_limit = result_limit

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except Exception as e:
            # Left for the sync endpoint and the callback, which may not show the exception itself.
            public = public_error_of(e)
            if public is not None:
                context["ti"].xcom_push(key=PUBLIC_ERROR_KEY, value=public)
            raise

    def run_step(self, context: Context) -> dict[str, Any]:
        method = self.method.upper()
        if method not in calls.METHODS or self.per not in ("record", "run"):
            raise FatalStepError(f"invalid http_call options: method {self.method!r}, per {self.per!r}")
        try:
            auth = auth_from_config(self.auth)
            retry = RetryPolicy(attempts=self.retry_attempts, base_seconds=self.retry_base_seconds)
        except ValueError as e:
            raise FatalStepError(f"invalid http_call options: {e}") from e
        rules = calls.ResponseRules(
            response_fields=self.response_fields,
            keep_fields=self.keep_fields,
            failure_statuses=frozenset(self.failure_statuses),
            failure_message_path=self.failure_message_path,
            failure_code_path=self.failure_code_path,
            failure_answer_status=self.failure_answer_status,
        )
        records = self._input_records(context)
        client = HttpCallClient(
            self.http_conn_id, auth, retry, self.timeout, self.max_requests_per_second, self.where, self.log
        )
        ids = (str(context["dag"].dag_id), str(context["run_id"]), self.task_id)
        outputs: list[dict[str, Any]] = []
        if self.per == "run":
            bodies = [calls.request_body(r, self.body, self.body_constants) for r in records]
            payload: Any = {self.batch_key: bodies} if self.batch_key else bodies
            answer = self._call(client, method, self.endpoint, payload, calls.idempotency_key(*ids, 0), rules)
            outputs.append(calls.output_record({}, self._checked(answer, method, "the batch"), rules))
        else:
            for index, record in enumerate(records):
                where = f"record {index + 1}"
                try:
                    endpoint = calls.render_endpoint(self.endpoint, record)
                except ValueError as e:
                    raise FatalStepError(f"{where}: {e}") from None
                payload = calls.request_body(record, self.body, self.body_constants)
                key = calls.idempotency_key(*ids, index)
                answer = self._call(client, method, endpoint, payload, key, rules)
                outputs.append(calls.output_record(record, self._checked(answer, method, where), rules))
        count = 1 if self.per == "run" else len(records)
        self.log.info(
            "%s %s: %d call(s) answered for %d record(s)", method, self.endpoint, count, len(records)
        )
        ref = self._stage(context, outputs)
        return {**ref, "calls": count, "result": outputs[: self.result_limit]}

    def _call(
        self,
        client: HttpCallClient,
        method: str,
        endpoint: str,
        payload: Any,
        key: str,
        rules: calls.ResponseRules,
    ) -> CallResponse:
        """One call; a refusal (a status in ``failure_statuses``) raises :class:`StepRejected`."""
        headers = {self.idempotency_header: key} if self.idempotency_header else {}
        response = client.call(
            method,
            endpoint,
            json_body=payload,
            params=self.query,
            headers=headers,
            retry=calls.may_retry(method, bool(self.idempotency_header)),
        )
        refused = calls.refusal(response.status, response.body, rules)
        if refused is not None:
            raise StepRejected(
                f"{method} {endpoint} was refused: HTTP {response.status}: {refused.message}",
                public_message=refused.message,
                status=refused.status,
                code=refused.code,
            )
        return response

    def _checked(self, response: CallResponse, method: str, where: str) -> Any:
        """The body of a successful answer; a technical failure for any other."""
        if 200 <= response.status < 300:
            return response.body
        tries = f" after {response.tries} tries" if response.tries > 1 else ""
        raise HttpCallFailed(
            f"{where}: {method} {self.endpoint} answered HTTP {response.status}{tries}",
            f"the third-party API answered HTTP {response.status}",
            status=502,
        )

    def _input_records(self, context: Context) -> list[dict[str, Any]]:
        """The records to call for (see the class docstring), as JSON values: no pandas needed."""
        if self.input_task_id is None:
            request = sync_request(getattr(context.get("dag_run"), "conf", None))
            if request is not None:
                return [dict(request.get("body") or {})]
        refs = self.input_refs(context)
        records = [record for ref in refs or [] for record in _read_staged(ref)]
        if self.input_task_id is None and self.event_inbox is not None:
            records += self._webhook_records(context)  # as StepOperator.load_input does
            if not records:
                raise AirflowSkipException("no new events on the inbox; nothing to do")
            return records
        return [{}] if refs is None else records

    def _stage(self, context: Context, records: list[dict[str, Any]]) -> StagedRecords:
        """The output records as the next step's input (same format and place as ``StepOperator.stage_output``)."""
        path = stage_path(self.customer_id, self.integration, self.flow, context["run_id"], self.task_id)
        columns = list(dict.fromkeys(key for record in records for key in record))
        return write_dicts(records, path, columns)


# Staged records are read and written with json (staging.read_dicts/write_dicts) so a call step does not
# pay the ~0.4 s pandas import per task, which shows in a synchronous flow's answer time.
def _read_staged(ref: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return read_dicts(ref)
    except FileNotFoundError as e:
        raise FatalStepError(str(e)) from e
