"""The sync endpoint's decisions, from plain inputs: headers, a body reader, a route table and a runs backend.

``POST /b2b/sync/<customer>/<integration>/<flow>`` (:meth:`SyncService.call`), in this order, so that an
unauthenticated or unauthorised caller learns nothing and starts nothing:

1. 401 without a valid ``Authorization: Bearer`` token (from Airflow's ``/auth/token``);
2. 403 unless the user may trigger the flow's DAG (Airflow's own check for ``POST .../dagRuns``);
3. 404 for an unknown customer, integration or flow, the same for all three;
4. 415 / 413 for a body that is not JSON or too large; 400 with a ``reason`` for a body the shared JSON
   policy refuses (:mod:`b2b_integrations.net.json_body`: not UTF-8/JSON, NaN or Infinity, integers
   outside int64, nesting over 64 levels); 422 for a body that is not an object or breaks the flow's
   ``input_schema`` (every field error), a bad ``Callback-Url`` (also one naming a loopback, private,
   link-local... address, see :mod:`b2b_integrations.net.addresses`), or a callback asked of a flow that
   cannot sign one; 400 for a bad ``Idempotency-Key``;
5. 503 (with ``Retry-After``) when the flow's DAG is not deployed yet or paused: no run is queued that
   would never start;
6. the run: with an ``Idempotency-Key`` a repeat finds the first call's run (409 if its body differs),
   otherwise a new run with the body in its conf; then wait, polling the run's task states at a short
   interval (no database connection is held while sleeping), until it ends or the wait is over;
7. 200 with the result, the failing step's status (402 for a declined payment) with its public message,
   or 202 with the run id and a ``Location``/``status_url`` to poll.

``GET .../runs/<run_id>`` (:meth:`SyncService.status`) answers the same document with 200 once authorised
(``Prefer: wait=N`` long-polls).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from anyio import to_thread

from b2b_integrations.naming import dag_id_for
from b2b_integrations.net.addresses import allowed_networks
from b2b_integrations.net.json_body import JsonRefused, parse_json
from b2b_integrations.sync import outcome as outcomes
from b2b_integrations.sync import protocol
from b2b_integrations.sync.airflow_runs import Caller, Deployment, RunNotStarted, Unauthenticated
from b2b_integrations.sync.outcome import RunView
from b2b_integrations.sync.routes import SyncRoute

DEFAULT_POLL_SECONDS = 0.1
DEFAULT_MAX_BYTES = 1024 * 1024
_IDENT = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class RouteLookup(Protocol):
    def find(self, customer_id: str, integration: str, flow: str) -> SyncRoute | None: ...


class RunsBackend(Protocol):
    """Who calls and what runs: Airflow's auth manager and metadata DB (``airflow_runs.AirflowRuns``)."""

    async def caller(self, authorization: str | None) -> Caller: ...
    def may_trigger(self, caller: Caller, dag_id: str) -> bool: ...
    def may_read(self, caller: Caller, dag_id: str) -> bool: ...
    def deployment(self, dag_id: str) -> Deployment: ...
    def start(self, dag_id: str, run_id: str, conf: dict[str, Any], caller: Caller) -> bool: ...
    def request_of(self, dag_id: str, run_id: str) -> dict[str, Any] | None: ...
    def view(self, dag_id: str, run_id: str) -> RunView | None: ...
    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any: ...


BodyReader = Callable[[int], Awaitable[bytes | None]]
"""Reads the request body up to a cap; None when it is longer."""
StatusUrl = Callable[[str], str]
"""The status URL of a run id."""
Gone = Callable[[], Awaitable[bool]]
"""Whether the caller has hung up (stop waiting for them)."""


def _error(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {"error": error, "detail": detail}, headers or {})


def _not_found() -> Answer:
    return _error(404, "not_found", "no synchronous flow here")


class SyncService:
    """Answers sync calls and status requests (see the module docstring)."""

    def __init__(
        self,
        routes: RouteLookup,
        backend: RunsBackend,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes = routes
        self.backend = backend
        self.poll_seconds = poll_seconds
        self.max_bytes = max_bytes
        self.clock = clock

    async def _authorised(
        self, headers: Mapping[str, str], parts: tuple[str, str, str], write: bool
    ) -> tuple[Caller, SyncRoute] | Answer:
        """The caller and the route, or the 401/403/404 answer."""
        try:
            caller = await self.backend.caller(headers.get("authorization"))
        except Unauthenticated as e:
            return _error(401, "unauthenticated", str(e), {"WWW-Authenticate": "Bearer"})
        if not all(_IDENT.match(part) for part in parts):
            return _not_found()
        # Authorise the DAG the path names before saying whether it exists, as Airflow's own API does.
        check = self.backend.may_trigger if write else self.backend.may_read
        if not await to_thread.run_sync(check, caller, dag_id_for(*parts)):
            what = "trigger" if write else "read the runs of"
            return _error(403, "forbidden", f"you may not {what} this flow's DAG")
        route = await to_thread.run_sync(self.routes.find, *parts)
        return _not_found() if route is None else (caller, route)

    async def call(
        self,
        customer: str,
        integration: str,
        flow: str,
        headers: Mapping[str, str],
        read_body: BodyReader,
        status_url: StatusUrl,
        gone: Gone | None = None,
    ) -> Answer:
        """Start (or find) the run for a sync call and answer it; see the module docstring."""
        found = await self._authorised(headers, (customer, integration, flow), write=True)
        if isinstance(found, Answer):
            return found
        caller, route = found
        request = await self._request(route, headers, read_body)
        if isinstance(request, Answer):
            return request
        body, key, callback_url = request
        state = await to_thread.run_sync(self.backend.deployment, route.dag_id)
        if state != "ready":
            why = "is not deployed yet" if state == "missing" else "is paused"
            return _error(503, "unavailable", f"this flow's DAG {why}", {"Retry-After": "30"})
        run_id = protocol.run_id_for(key, caller.id)
        try:
            conflict = await self._start(route, run_id, body, key, callback_url, caller)
        except RunNotStarted as e:
            return _error(503, "unavailable", str(e), {"Retry-After": "30"})
        if conflict is not None:
            return conflict
        preference = protocol.parse_prefer(headers.get("prefer"))
        wait = protocol.wait_seconds(preference, route.timeout_seconds, route.max_timeout_seconds)
        answer = await self._answer(route, run_id, wait, status_url, gone)
        if preference.wait is not None and not preference.respond_async:
            answer.headers["Preference-Applied"] = f"wait={wait:g}"
        return answer

    async def status(
        self,
        customer: str,
        integration: str,
        flow: str,
        run_id: str,
        headers: Mapping[str, str],
        status_url: StatusUrl,
        gone: Gone | None = None,
    ) -> Answer:
        """The status document of a run of the flow, 200 whatever its state (``Prefer: wait=N`` long-polls)."""
        found = await self._authorised(headers, (customer, integration, flow), write=False)
        if isinstance(found, Answer):
            return found
        _, route = found
        preference = protocol.parse_prefer(headers.get("prefer"))
        wait = protocol.wait_seconds(preference, 0.0, route.max_timeout_seconds)
        answer = await self._answer(route, run_id, wait, status_url, gone)
        if answer.status == 404:
            return answer
        return Answer(200, answer.body, {k: v for k, v in answer.headers.items() if k != "Location"})

    async def _request(
        self, route: SyncRoute, headers: Mapping[str, str], read_body: BodyReader
    ) -> tuple[dict[str, Any], str | None, str | None] | Answer:
        """The body, Idempotency-Key and Callback-Url of a call, or the answer refusing it."""
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            return _error(415, "unsupported_media_type", "send the request as application/json")
        raw = await read_body(self.max_bytes)
        if raw is None:
            return _error(413, "too_large", f"the body is over {self.max_bytes} bytes")
        try:
            body = parse_json(raw)
        except JsonRefused as e:
            return Answer(400, e.answer_body())
        if not isinstance(body, dict):
            problem = [{"field": "(body)", "message": "the body must be a JSON object"}]
            return _error(422, "invalid_request", problem)
        problems = protocol.field_errors(body, route.input_schema)
        if problems:
            return _error(422, "invalid_request", problems)
        key = headers.get("idempotency-key")
        callback_url = headers.get("callback-url")
        try:
            key = protocol.check_idempotency_key(key) if key is not None else None
        except ValueError as e:
            return _error(400, "bad_idempotency_key", str(e))
        if callback_url is not None:
            if not route.callbacks:
                detail = "this flow does not send callbacks (no callback secret is configured)"
                return _error(422, "invalid_request", [{"field": "Callback-Url", "message": detail}])
            try:
                callback_url = protocol.check_callback_url(callback_url, allowed_networks())
            except ValueError as e:
                return _error(422, "invalid_request", [{"field": "Callback-Url", "message": str(e)}])
        return body, key, callback_url

    async def _start(
        self,
        route: SyncRoute,
        run_id: str,
        body: dict[str, Any],
        key: str | None,
        callback_url: str | None,
        caller: Caller,
    ) -> Answer | None:
        """Start the run unless the key's run exists; the 409 answer when that run had another body."""
        conf = protocol.sync_conf(body, callback_url, key, caller.name)
        if key is not None:
            existing = await to_thread.run_sync(self.backend.request_of, route.dag_id, run_id)
            if existing is None:
                if await to_thread.run_sync(self.backend.start, route.dag_id, run_id, conf, caller):
                    return None
                existing = await to_thread.run_sync(self.backend.request_of, route.dag_id, run_id)
            if (existing or {}).get("body_sha256") != conf[protocol.SYNC_CONF_KEY]["body_sha256"]:
                detail = "this Idempotency-Key was used with another request body"
                return _error(409, "idempotency_key_reused", detail)
            return None
        await to_thread.run_sync(self.backend.start, route.dag_id, run_id, conf, caller)
        return None

    async def _answer(
        self, route: SyncRoute, run_id: str, wait: float, status_url: StatusUrl, gone: Gone | None
    ) -> Answer:
        """Wait up to ``wait`` seconds for the run to end, then say where it is."""
        deadline = self.clock() + wait
        while True:
            view = await to_thread.run_sync(self.backend.view, route.dag_id, run_id)
            if view is None:
                return _error(404, "not_found", "no such run of this flow")
            result = outcomes.decide(view, route.steps)
            if result.finished or self.clock() >= deadline or (gone is not None and await gone()):
                break
            await asyncio.sleep(min(self.poll_seconds, max(0.0, deadline - self.clock())))
        if not result.finished:
            url = status_url(run_id)
            doc = outcomes.document(run_id, result, status_url=url)
            return Answer(202, doc, {"Location": url, "Retry-After": "1"})
        error = None
        value = None
        if result.status == "succeeded":
            value = await to_thread.run_sync(
                self.backend.xcom, route.dag_id, run_id, route.result_step, "return_value"
            )
        else:
            pushed = None
            if result.failed_step is not None:
                pushed = await to_thread.run_sync(
                    self.backend.xcom, route.dag_id, run_id, result.failed_step, outcomes.PUBLIC_ERROR_KEY
                )
            error = outcomes.public_error(result.failed_step, pushed)
        doc = outcomes.document(run_id, result, value, error)
        return Answer(outcomes.http_status(result, error), doc)
