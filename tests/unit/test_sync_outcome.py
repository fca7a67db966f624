"""What a synchronous run amounts to: the decision from task states, the public error, the documents."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from b2b_integrations.clients.http_call import HttpCallFailed
from b2b_integrations.errors import FatalStepError
from b2b_integrations.sync import outcome
from b2b_integrations.sync.outcome import Outcome, RunView, StepRejected

STEPS = ("charge_payment", "create_fulfilment")


def _view(run_state: str = "running", **states: str | None) -> RunView:
    return RunView("sync__r1", run_state, states)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (_view("queued"), Outcome("queued")),
        (_view(charge_payment="queued"), Outcome("running")),
        (_view(charge_payment="up_for_retry"), Outcome("running")),
        (_view(charge_payment="success", create_fulfilment="running"), Outcome("running")),
        # Done as soon as the steps are: the callback task (a teardown) is not waited for.
        (_view(charge_payment="success", create_fulfilment="success", **{"notify-caller": None}), Outcome("succeeded")),
        (_view(charge_payment="success", create_fulfilment="skipped"), Outcome("succeeded")),
        (_view(charge_payment="failed", create_fulfilment="upstream_failed"), Outcome("failed", "charge_payment")),
        (_view(charge_payment="failed"), Outcome("failed", "charge_payment")),
        (_view(charge_payment="success", create_fulfilment="upstream_failed"), Outcome("failed", "create_fulfilment")),
        (_view("failed", charge_payment="running"), Outcome("failed")),
        (_view("success"), Outcome("succeeded")),
    ],
)  # fmt: skip
def test_decide(view: RunView, expected: Outcome) -> None:
    assert outcome.decide(view, STEPS) == expected


def test_a_refusal_inside_airflows_fail_exception_is_found_with_its_public_message() -> None:
    rejected = StepRejected(
        "POST https://pay.example.com/charges was refused: HTTP 402 (key sk_live_123)",
        public_message="The card has insufficient funds.",
        status=402,
        code="insufficient_funds",
    )
    try:
        try:
            raise rejected
        except FatalStepError as e:  # what StepOperator.execute does
            raise AirflowFailException(f"customer acme, step charge_payment: {e}") from e
    except AirflowFailException as wrapped:
        found = outcome.public_error_of(wrapped)
    assert found == {
        "message": "The card has insufficient funds.",
        "http_status": 402,
        "code": "insufficient_funds",
    }


def test_a_technical_http_failure_tells_only_its_public_part() -> None:
    failed = HttpCallFailed(
        "POST https://user@pay.example.com/x failed after 3 tries: HTTP 503", "the API answered HTTP 503"
    )
    assert outcome.public_error_of(failed) == {"message": "the API answered HTTP 503", "http_status": 502}
    assert outcome.public_error_of(ValueError("boom at /etc/secret")) is None


def test_public_error_uses_what_the_step_left_or_names_only_the_step() -> None:
    pushed = {"message": "The card was declined.", "http_status": 402, "code": "card_declined"}
    assert outcome.public_error("charge_payment", pushed) == {"step": "charge_payment", **pushed}
    assert outcome.public_error("transform", None) == {
        "step": "transform",
        "message": "step 'transform' failed",
        "http_status": 500,
    }
    assert outcome.public_error("x", {"message": "m", "http_status": 200})["http_status"] == 500
    assert outcome.public_error(None, None)["http_status"] == 500


def test_public_result_answers_the_record_and_never_a_server_path() -> None:
    record = {"order_id": "o-1", "fulfilment_id": "ful_1"}
    staged = {"path": "/data/runs/x.ndjson", "rows": 1, "columns": ["order_id"]}
    assert outcome.public_result({**staged, "result": [record]}) == record
    assert outcome.public_result({**staged, "result": [record, record]}) == [record, record]
    assert outcome.public_result(staged) == {"rows": 1, "columns": ["order_id"]}
    assert outcome.public_result({"plain": 1}) == {"plain": 1}


def test_documents_and_statuses() -> None:
    done = Outcome("succeeded")
    assert outcome.document("r1", done, {"result": [{"a": 1}]}) == {
        "status": "succeeded",
        "run_id": "r1",
        "result": {"a": 1},
    }
    assert outcome.http_status(done, None) == 200
    failed = Outcome("failed", "charge_payment")
    error = outcome.public_error("charge_payment", {"message": "declined", "http_status": 402})
    assert outcome.document("r1", failed, error=error)["error"]["message"] == "declined"
    assert outcome.http_status(failed, error) == 402
    assert outcome.http_status(Outcome("failed"), None) == 500
    running = outcome.document("r1", Outcome("running"), status_url="http://x/runs/r1")
    assert running == {"status": "running", "run_id": "r1", "status_url": "http://x/runs/r1"}
    assert outcome.http_status(Outcome("queued"), None) == 202


def test_the_callback_task_id_can_never_be_a_step_id() -> None:
    import re

    from b2b_integrations.config.base import IDENT_PATTERN

    assert not re.match(IDENT_PATTERN, outcome.CALLBACK_TASK_ID)
