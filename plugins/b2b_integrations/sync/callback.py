"""The last task of a synchronous flow: POST the run's answer to the caller's callback URL, signed.

Durable by being a task: the callback survives an API server restart (the caller's 202 is long gone by
then), it is retried with backoff and then by Airflow's task retries, and a callback that could not be
delivered shows as a failed task rather than vanishing. It is an Airflow teardown, so it runs whether the
steps succeeded or failed and its own state does not change the run's.

The request is signed with Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
with the customer's callback secret; the ``webhook-id`` is the same on every try, so a receiver that got
a callback twice (an answer lost on the way back) can drop the repeat.

The caller chose the URL, so each try resolves its host once, checks every address against the SSRF policy
(:mod:`b2b_integrations.net.addresses`, with the ``B2B_CALLBACK_ALLOWED_NETWORKS`` allow-list) and then
connects to that very address, with the name in ``Host`` and as the TLS server name (so the certificate is
still checked against the name). Resolving again at connect time would let a name that answered with a
public address for the check answer with 127.0.0.1 for the connection (DNS rebinding). A refused address
fails the task at once, without retries.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from b2b_integrations.errors import FatalStepError, RetriableStepError
from b2b_integrations.net.addresses import (
    AddressRefused,
    IPNetwork,
    allowed_networks,
    check_address,
    check_resolved,
    literal_address,
)
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.sync import outcome as outcomes
from b2b_integrations.sync.protocol import sync_request
from b2b_integrations.webhooks.signatures import sign_standard

if TYPE_CHECKING:
    from airflow.sdk import Context

Post = Callable[[str, bytes, dict[str, str]], int]
"""Sends one request; returns the HTTP status (raises on a transport failure)."""


Resolve = Callable[[str, int], list[str]]
"""A host name and port -> the addresses it resolves to (text)."""


class CallbackFailed(RetriableStepError):
    """Every try to deliver the callback failed; the message names the host only (URLs may hold tokens)."""


class CallbackRefused(FatalStepError):
    """The callback's host is, or resolves to, an address callbacks may not go to (names the host only)."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, through the system resolver (``getaddrinfo``)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def pinned_target(
    url: str, allowed: Sequence[IPNetwork], resolve: Resolve | None = None
) -> tuple[str, str, dict[str, Any]]:
    """Where to send a callback: ``url`` with its host replaced by the checked address, the ``Host``
    header, and the request extensions (the TLS server name for https to a name).

    :raises AddressRefused: when the host is, or resolves to, an address the policy refuses.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = literal_address(host)
    if literal is not None:
        check_address(literal, allowed)
        address = literal
    else:
        address = check_resolved(host, (resolve or resolve_host)(host, port), allowed)
    connect = f"[{address}]" if address.version == 6 else str(address)
    netloc = connect if parts.port is None else f"{connect}:{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    extensions: dict[str, Any] = {}
    if parts.scheme == "https" and literal is None:
        extensions["sni_hostname"] = host
    return urlunsplit(parts._replace(netloc=netloc)), host_header, extensions


def callback_message_id(dag_id: str, run_id: str) -> str:
    """The callback's ``webhook-id``: one per run, the same on every try."""
    return "msg_" + hashlib.sha256(f"{dag_id}\n{run_id}".encode()).hexdigest()[:32]


def deliver(
    url: str,
    body: bytes,
    secret: str,
    message_id: str,
    policy: RetryPolicy,
    post: Post,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    log: Any = None,
) -> int:
    """POST ``body`` to ``url`` until a 2xx, re-signed on each try (a fresh timestamp); return the tries.

    :raises CallbackFailed: after ``policy.attempts`` tries without a 2xx.
    """
    host = urlsplit(url).hostname or "?"
    problem = ""
    for attempt in range(1, policy.attempts + 1):
        headers = {"content-type": "application/json", "user-agent": "b2b-integrations"}
        headers.update(sign_standard(secret, message_id, int(clock()), body))
        try:
            status = post(url, body, headers)
        except AddressRefused as e:  # no retry brings a refused address closer
            raise CallbackRefused(f"the callback to {host} was refused: {e}") from None
        except Exception as e:  # any transport failure is worth another try
            problem = type(e).__name__
        else:
            if 200 <= status < 300:
                return attempt
            problem = f"HTTP {status}"
        if attempt < policy.attempts:
            wait = policy.backoff(attempt)
            if log is not None:
                log.warning(
                    "Callback to %s: %s; try %d of %d in %.1f s",
                    host,
                    problem,
                    attempt + 1,
                    policy.attempts,
                    wait,
                )
            sleep(wait)
    raise CallbackFailed(f"the callback to {host} failed {policy.attempts} times; last: {problem}")


class SyncCallbackOperator(StepOperator):
    """
    Send a synchronous run's answer (the same document the endpoint answers with) to the ``Callback-Url``
    the call gave; do nothing when it gave none. Meant as the flow's teardown task (``factory/build.py``).

    :param steps: The flow's step task ids, in order (to tell how the run ended).
    :param result_task_id: The step whose return value is the answer.
    :param secret_conn_id: Connection whose password (``whsec_...``) signs the callback.
    :param attempts: Tries before the task fails (then Airflow's task retries apply).
    :param base_seconds: First backoff between tries; doubles, with jitter, up to ``max_seconds``.
    :param max_seconds: Longest backoff.
    :param timeout: Seconds per request.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#eeeeee"

    def __init__(
        self,
        *,
        steps: Sequence[str],
        result_task_id: str,
        secret_conn_id: str | None = None,
        attempts: int = 5,
        base_seconds: float = 1.0,
        max_seconds: float = 30.0,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.steps = list(steps)
        self.result_task_id = result_task_id
        self.secret_conn_id = secret_conn_id
        self.attempts = attempts
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.timeout = timeout

    def run_step(self, context: Context) -> dict[str, Any]:
        request = sync_request(getattr(context.get("dag_run"), "conf", None)) or {}
        url = request.get("callback_url")
        if not url:
            self.log.info("The call asked for no callback")
            return {"callback": "not requested"}
        from airflow.sdk.log import mask_secret

        mask_secret(url)  # callback URLs often carry a token
        secret = self._secret()
        dag_id, run_id = str(context["dag"].dag_id), str(context["run_id"])
        doc = {
            **self.document(context, dag_id, run_id),
            "customer": self.customer_id,
            "integration": self.integration,
            "flow": self.flow,
        }
        if request.get("idempotency_key") is not None:
            doc["idempotency_key"] = request["idempotency_key"]
        body = json.dumps(doc, separators=(",", ":"), default=str).encode()
        policy = RetryPolicy(
            attempts=self.attempts, base_seconds=self.base_seconds, max_seconds=self.max_seconds
        )
        tries = deliver(
            url, body, secret, callback_message_id(dag_id, run_id), policy, self._post, log=self.log
        )
        host = urlsplit(url).hostname
        self.log.info("Callback with status %r delivered to %s (try %d)", doc["status"], host, tries)
        return {"callback": "delivered", "status": doc["status"], "tries": tries}

    def document(self, context: Context, dag_id: str, run_id: str) -> dict[str, Any]:
        """The run's status document, from its steps' states and XComs (as the endpoint builds it)."""
        ti = context["ti"]
        states = ti.get_task_states(dag_id=dag_id, run_ids=[run_id], task_ids=self.steps)
        view = outcomes.RunView(run_id, "running", dict(states.get(run_id, {})))
        outcome = outcomes.decide(view, self.steps)
        if not outcome.finished:  # a teardown runs after the steps; a step left unfinished was cut short
            outcome = outcomes.Outcome(
                "failed", next((s for s in self.steps if not view.task_states.get(s)), None)
            )
        if outcome.status == "succeeded":
            result = ti.xcom_pull(task_ids=self.result_task_id, key="return_value")
            return outcomes.document(run_id, outcome, result)
        pushed = None
        if outcome.failed_step is not None:
            pushed = ti.xcom_pull(task_ids=outcome.failed_step, key=outcomes.PUBLIC_ERROR_KEY)
        return outcomes.document(run_id, outcome, error=outcomes.public_error(outcome.failed_step, pushed))

    def _secret(self) -> str:
        from airflow.sdk import Connection

        if not self.secret_conn_id:
            raise FatalStepError("a callback was asked for but the flow has no callback secret connection")
        password = Connection.get(self.secret_conn_id).password
        if not password:
            raise FatalStepError(f"connection {self.secret_conn_id!r} has no password (the callback secret)")
        return str(password)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        import httpx
        from airflow.sdk.log import mask_secret

        target, host_header, extensions = pinned_target(url, allowed_networks())
        mask_secret(target)  # the URL httpx logs now has the address in it, not the masked original
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            response = client.post(
                target, content=body, headers={**headers, "Host": host_header}, extensions=extensions
            )
            return response.status_code
