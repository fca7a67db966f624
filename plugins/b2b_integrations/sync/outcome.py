"""What a synchronous run amounts to, told the same way to the waiting caller, the status URL and the callback.

Pure: from the states of the run and of its steps, plus two XComs (the result step's return value and a
failed step's public error), to one status document and its HTTP status.

* **Done** means every step succeeded (or was skipped): the answer is 200 with the result step's return
  value. The flow's callback task is not a step and is not waited for: the caller's answer never waits for
  the callback to be sent.
* **Failed** means a step failed (or could not run because one before it failed). A step that fails for a
  reason the caller may know raises :class:`StepRejected` (or another error with ``public_message`` and
  ``status``, like an HTTP call's technical failure); the step pushes that to XCom under
  :data:`PUBLIC_ERROR_KEY` before failing, and the answer carries its message and status (402 for a
  declined payment). Any other failure is a 500 naming only the step: no exception text, no stack trace.
* Anything else (queued, running, up for retry) is not finished: 202.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from b2b_integrations.errors import FatalStepError
from b2b_integrations.naming import CALLBACK_TASK_ID  # noqa: F401 - the sync modules' name for it

PUBLIC_ERROR_KEY = "b2b_public_error"
"""XCom key under which a failing step leaves what a caller may be told about its failure."""
# CALLBACK_TASK_ID (naming.py) is not a valid step id (a hyphen), so it never collides with one.
SUCCESS_STATES = frozenset({"success", "skipped"})
FAILED_STATES = frozenset({"failed", "upstream_failed"})
Status = Literal["queued", "running", "succeeded", "failed"]


class StepRejected(FatalStepError):
    """A step was refused for a business reason (a declined payment, an unknown product).

    Fails the task without retries. ``public_message`` and ``status`` are what a synchronous caller gets;
    ``str(self)`` is the full message for the task log.
    """

    def __init__(self, message: str, *, public_message: str, status: int = 422, code: str | None = None):
        super().__init__(message)
        self.public_message = public_message
        self.status = status
        self.code = code


@dataclass(frozen=True)
class RunView:
    """The states of one run and its tasks, as read from the metadata database."""

    run_id: str
    state: str
    task_states: Mapping[str, str | None]


@dataclass(frozen=True)
class Outcome:
    status: Status
    failed_step: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


def decide(view: RunView, steps: Sequence[str]) -> Outcome:
    """The outcome of a run of a flow whose steps are ``steps`` (in order)."""
    states = {step: view.task_states.get(step) for step in steps}
    failed = next((s for s in steps if states[s] == "failed"), None)
    failed = failed or next((s for s in steps if states[s] in FAILED_STATES), None)
    if failed is not None:
        return Outcome("failed", failed)
    if steps and all(state in SUCCESS_STATES for state in states.values()):
        return Outcome("succeeded")
    if view.state == "success":
        return Outcome("succeeded")
    if view.state == "failed":  # marked failed, or timed out before a step failed
        return Outcome("failed")
    return Outcome("queued" if view.state == "queued" else "running")


def public_error_of(error: BaseException) -> dict[str, Any] | None:
    """What a caller may be told about ``error`` (or an error it was raised from); None: nothing."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        message = getattr(current, "public_message", None)
        status = getattr(current, "status", None)
        if isinstance(message, str) and isinstance(status, int):
            found: dict[str, Any] = {"message": message, "http_status": status}
            if getattr(current, "code", None):
                found["code"] = str(current.code)  # type: ignore[attr-defined]
            return found
        current = current.__cause__ or current.__context__
    return None


def public_error(step: str | None, pushed: Any) -> dict[str, Any]:
    """The error part of the answer: the step's pushed public error, or a generic one naming the step."""
    if step is None:
        return {"step": None, "message": "the run failed before any step failed", "http_status": 500}
    error: dict[str, Any] = {"step": step, "message": f"step {step!r} failed", "http_status": 500}
    if isinstance(pushed, dict) and isinstance(pushed.get("message"), str):
        status = pushed.get("http_status")
        error["message"] = pushed["message"]
        error["http_status"] = status if isinstance(status, int) and 400 <= status <= 599 else 500
        if pushed.get("code"):
            error["code"] = str(pushed["code"])
    return error


def public_result(value: Any) -> Any:
    """The answer's ``result`` from the result step's return value.

    A step's ``result`` entry is its answer (an HTTP call's output records); a single record is answered
    as that record. A bare staged-records reference is answered as its size, never its server path.
    """
    if isinstance(value, dict) and "result" in value:
        result = value["result"]
        return result[0] if isinstance(result, list) and len(result) == 1 else result
    if isinstance(value, dict) and "path" in value and "rows" in value:
        return {"rows": value["rows"], "columns": value.get("columns", [])}
    return value


def document(
    run_id: str,
    outcome: Outcome,
    result: Any = None,
    error: dict[str, Any] | None = None,
    status_url: str | None = None,
) -> dict[str, Any]:
    """The status document: the body of the sync answer, of the status URL and of the callback."""
    doc: dict[str, Any] = {"status": outcome.status, "run_id": run_id}
    if outcome.status == "succeeded":
        doc["result"] = public_result(result)
    elif outcome.status == "failed":
        doc["error"] = error or public_error(outcome.failed_step, None)
    if status_url is not None:
        doc["status_url"] = status_url
    return doc


def http_status(outcome: Outcome, error: dict[str, Any] | None) -> int:
    """The status of a synchronous answer: 200 done, the error's status failed, 202 not finished."""
    if outcome.status == "succeeded":
        return 200
    if outcome.status == "failed":
        return int((error or {}).get("http_status") or 500)
    return 202
