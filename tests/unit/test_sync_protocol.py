"""The request side of synchronous calls: run ids, Prefer, callback URLs, field errors, the run's conf."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from b2b_integrations.sync import protocol
from b2b_integrations.sync.protocol import Preference

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "additionalProperties": False,
    "properties": {
        "order_id": {"type": "string"},
        "amount": {"type": "number", "exclusiveMinimum": 0},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
    },
}
# Airflow's default allowed_run_id_pattern, which manual run ids must match.
ALLOWED_RUN_ID = re.compile(r"^[A-Za-z0-9_.~:+-]+$")


def test_a_key_gives_the_same_run_id_each_time_scoped_to_the_caller() -> None:
    first = protocol.run_id_for("order-42", "alice")
    assert first == protocol.run_id_for("order-42", "alice")
    assert first != protocol.run_id_for("order-42", "bob")
    assert first != protocol.run_id_for("order-43", "alice")
    assert first.startswith("sync__key_") and ALLOWED_RUN_ID.match(first)


def test_any_key_text_becomes_a_valid_run_id() -> None:
    weird = protocol.run_id_for("ünïcode/../key with spaces\n", "alice")
    assert ALLOWED_RUN_ID.match(weird) and ".." not in weird and len(weird) < 250


def test_runs_without_a_key_get_fresh_readable_ids() -> None:
    now = datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=UTC)
    one, two = protocol.run_id_for(None, "alice", now), protocol.run_id_for(None, "alice", now)
    assert one != two
    assert one.startswith("sync__20260105T100000123456Z_") and ALLOWED_RUN_ID.match(one)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, Preference()),
        ("wait=10", Preference(wait=10.0)),
        ('wait="2.5"', Preference(wait=2.5)),
        ("respond-async, wait=5", Preference(wait=5.0, respond_async=True)),
        ("handling=lenient, WAIT = 7", Preference(wait=7.0)),
        ("wait=soon", Preference()),
        ("wait=-1", Preference()),
    ],
)
def test_prefer_header(header: str | None, expected: Preference) -> None:
    assert protocol.parse_prefer(header) == expected


def test_the_wait_is_the_flows_default_or_the_asked_one_within_the_cap() -> None:
    assert protocol.wait_seconds(Preference(), 30, 120) == 30
    assert protocol.wait_seconds(Preference(wait=5), 30, 120) == 5
    assert protocol.wait_seconds(Preference(wait=500), 30, 120) == 120
    assert protocol.wait_seconds(Preference(wait=500, respond_async=True), 30, 120) == 0


@pytest.mark.parametrize("url", ["https://example.com/hooks?token=abc", "http://93.184.215.14:8080/cb"])
def test_good_callback_urls(url: str) -> None:
    assert protocol.check_callback_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/cb", "loopback"),
        ("http://[::1]/cb", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.0.0.5:8080/cb", "private"),
        ("http://0.0.0.0/cb", "unspecified"),
        ("http://[::ffff:127.0.0.1]/cb", "loopback"),
        ("http://0x7f000001/cb", "non-canonical"),
        ("http://2130706433/cb", "non-canonical"),
        ("http://0177.0.0.1/cb", "non-canonical"),
        ("http://127.1/cb", "non-canonical"),
    ],
)
def test_callback_urls_into_our_network_are_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        protocol.check_callback_url(url)


def test_an_allowed_network_may_take_callbacks() -> None:
    from b2b_integrations.net.addresses import parse_networks

    allowed = parse_networks("10.0.0.0/8")
    assert protocol.check_callback_url("http://10.0.0.5:8080/cb", allowed) == "http://10.0.0.5:8080/cb"
    with pytest.raises(ValueError, match="loopback"):
        protocol.check_callback_url("http://127.0.0.1/cb", allowed)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("https:///nohost", "no host"),
        ("https://user:secret@example.com/cb", "credentials"),
        ("https://example.com:99999/cb", "not a valid URL"),
        ("https://example.com/a b", "whitespace"),
        ("https://example.com/" + "a" * 2000, "longer than"),
    ],
)
def test_bad_callback_urls_are_refused_without_echoing_them(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        protocol.check_callback_url(url)
    assert "secret" not in str(caught.value) and "alert" not in str(caught.value)


def test_every_field_error_is_reported_with_its_field() -> None:
    errors = protocol.field_errors({"amount": -1, "items": [{"qty": 1}], "extra": True}, ORDER_SCHEMA)
    assert [e["field"] for e in errors] == ["(body)", "(body)", "amount", "items/0"]
    messages = " | ".join(e["message"] for e in errors)
    assert "'order_id' is a required property" in messages
    assert "'extra' was unexpected" in messages
    assert "'sku' is a required property" in messages
    assert protocol.field_errors({"order_id": "o-1", "amount": 3}, ORDER_SCHEMA) == []
    assert protocol.field_errors({"anything": 1}, None) == []


def test_the_draft_named_by_the_schema_is_used() -> None:
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["a"]}
    assert protocol.field_errors({}, draft7)[0]["message"] == "'a' is a required property"


def test_the_request_goes_into_the_conf_under_one_key_that_cannot_be_a_param() -> None:
    conf = protocol.sync_conf({"order_id": "o-1"}, "https://cb.example.com/x", "k-1", "alice")
    assert list(conf) == ["b2b-sync"]
    request = protocol.sync_request(conf)
    assert request is not None
    assert request["body"] == {"order_id": "o-1"}
    assert request["callback_url"] == "https://cb.example.com/x" and request["idempotency_key"] == "k-1"
    assert request["body_sha256"] == protocol.body_digest({"order_id": "o-1"})
    assert protocol.sync_request({"threshold": 3}) is None and protocol.sync_request(None) is None


def test_the_body_digest_ignores_key_order_but_not_values() -> None:
    assert protocol.body_digest({"a": 1, "b": [1, 2]}) == protocol.body_digest({"b": [1, 2], "a": 1})
    assert protocol.body_digest({"a": 1}) != protocol.body_digest({"a": 1.5})


def test_idempotency_keys_must_be_short_and_not_blank() -> None:
    assert protocol.check_idempotency_key("abc") == "abc"
    with pytest.raises(ValueError, match="empty"):
        protocol.check_idempotency_key("  ")
    with pytest.raises(ValueError, match="longer"):
        protocol.check_idempotency_key("k" * 256)
