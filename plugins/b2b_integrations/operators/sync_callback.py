"""The last task of a synchronous flow: POST the run's answer to the caller's callback URL, signed.

Durable by being a task: the callback survives an API server restart (the caller's 202 is long gone by
then), it is retried with backoff and then by Airflow's task retries, and a callback that could not be
delivered shows as a failed task rather than vanishing. It is an Airflow teardown, so it runs whether the
steps succeeded or failed and its own state does not change the run's. How the request is signed and why
each try connects to the address it checked: ``sync/callback.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from b2b_integrations.errors import FatalStepError
from b2b_integrations.net.addresses import allowed_networks
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.sync import outcome as outcomes
from b2b_integrations.sync.callback import callback_message_id, deliver, pinned_target
from b2b_integrations.sync.protocol import sync_request

if TYPE_CHECKING:
    from airflow.sdk import Context


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
