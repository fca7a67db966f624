"""http_call's pure parts: the request from a record, what an answer means, idempotency keys."""

from __future__ import annotations

import pytest

from b2b_integrations.sources import http_call as calls

RULES = calls.ResponseRules(
    response_fields={"charge_id": "id", "last4": "card.last4"},
    failure_statuses=frozenset({402, 409}),
    failure_message_path="error.message",
    failure_code_path="error.decline_code",
)


def test_endpoint_placeholders_are_filled_and_encoded() -> None:
    record = {"order_id": "A/1 ?x", "customer": {"id": 7}}
    assert calls.render_endpoint("/orders/{order_id}/c/{customer.id}", record) == "/orders/A%2F1%20%3Fx/c/7"
    assert calls.placeholders("/orders/{order_id}/c/{customer.id}") == ["order_id", "customer.id"]
    assert calls.render_endpoint("/plain", record) == "/plain"


@pytest.mark.parametrize("record", [{}, {"order_id": None}, {"order_id": {"nested": 1}}])
def test_a_missing_placeholder_value_names_the_field(record: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="'order_id'"):
        calls.render_endpoint("/orders/{order_id}", record)


def test_the_body_maps_our_fields_to_theirs_with_nesting_and_constants() -> None:
    record = {"amount": 12.5, "token": "tok_visa", "order": {"id": "o-1"}, "note": None, "secret": "x"}
    body = calls.request_body(
        record,
        {"amount": "amount", "card.token": "token", "metadata.order_id": "order.id", "memo": "note"},
        {"currency": "EUR", "metadata.source": "b2b"},
    )
    assert body == {
        "amount": 12.5,
        "card": {"token": "tok_visa"},
        "metadata": {"order_id": "o-1", "source": "b2b"},
        "currency": "EUR",
    }
    assert calls.request_body({"a": 1}, None, {"b": 2}) == {"a": 1, "b": 2}


def test_the_output_keeps_chosen_input_fields_and_adds_response_fields() -> None:
    record = {"order_id": "o-1", "payment_token": "tok_visa", "amount": 3}
    response = {"id": "ch_1", "card": {"last4": "4242"}, "other": True}
    assert calls.output_record(record, response, RULES) == {**record, "charge_id": "ch_1", "last4": "4242"}
    kept = calls.ResponseRules(response_fields={"charge_id": "id"}, keep_fields=["order_id", "missing"])
    assert calls.output_record(record, response, kept) == {
        "order_id": "o-1",
        "missing": None,
        "charge_id": "ch_1",
    }
    assert calls.output_record(record, None, kept)["charge_id"] is None


def test_a_listed_status_is_a_refusal_with_their_reason_made_safe_to_show() -> None:
    body = {"error": {"message": "Insufficient\n funds\x00 on card.", "decline_code": "insufficient_funds"}}
    assert calls.refusal(402, body, RULES) == calls.Refusal(
        402, "Insufficient funds on card.", "insufficient_funds"
    )
    assert calls.refusal(500, body, RULES) is None
    assert calls.refusal(201, {}, RULES) is None
    assert calls.refusal(409, None, RULES) == calls.Refusal(
        409, "refused by the third party (HTTP 409)", None
    )


def test_the_answer_status_of_a_refusal_can_be_set_and_is_never_a_5xx_by_default() -> None:
    rules = calls.ResponseRules(
        response_fields={}, failure_statuses=frozenset({422, 503}), failure_answer_status=None
    )
    assert calls.refusal(422, {}, rules).status == 422  # type: ignore[union-attr]
    assert calls.refusal(503, {}, rules).status == 502  # type: ignore[union-attr]
    chosen = calls.ResponseRules(
        response_fields={}, failure_statuses=frozenset({422}), failure_answer_status=400
    )
    assert calls.refusal(422, {}, chosen).status == 400  # type: ignore[union-attr]


def test_public_text_is_one_short_line() -> None:
    assert calls.public_text("a\r\nb\tc\u202ed") == "a b c d"
    assert len(calls.public_text("x" * 1000)) == calls.PUBLIC_TEXT_LIMIT
    assert calls.public_text(None) == "" and calls.public_text(42) == "42"


def test_idempotency_keys_are_stable_per_call_and_differ_between_calls() -> None:
    key = calls.idempotency_key("acme__orders__place", "sync__key_1", "charge", 0)
    assert key == calls.idempotency_key("acme__orders__place", "sync__key_1", "charge", 0)
    others = {
        calls.idempotency_key("acme__orders__place", "sync__key_2", "charge", 0),
        calls.idempotency_key("acme__orders__place", "sync__key_1", "fulfil", 0),
        calls.idempotency_key("acme__orders__place", "sync__key_1", "charge", 1),
        calls.idempotency_key("globex__orders__place", "sync__key_1", "charge", 0),
    }
    assert key not in others and len(others) == 4


def test_only_calls_that_cannot_happen_twice_are_retried() -> None:
    assert (
        calls.may_retry("GET", False) and calls.may_retry("PUT", False) and calls.may_retry("DELETE", False)
    )
    assert not calls.may_retry("POST", False) and not calls.may_retry("PATCH", False)
    assert calls.may_retry("POST", True)
