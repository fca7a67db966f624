"""What a flow reads from its inbox asset events: one record per pub/sub message, batched or not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from b2b_integrations.operators.base import inbox_messages

AT = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)


def _event(payload: object) -> SimpleNamespace:
    return SimpleNamespace(id=41, timestamp=AT, extra={"from_trigger": True, "payload": payload})


def test_a_single_message_keeps_its_id_and_a_batch_gives_one_record_per_message_in_order() -> None:
    single = {"type": "message", "channel": "orders", "data": json.dumps({"n": 1}), "broker": "amqp"}
    assert inbox_messages(_event(single)) == [
        {"message_id": "pubsub:orders:41", "received_at": AT.isoformat(), "payload": {"n": 1}}
    ]
    batch = {
        "type": "messages",
        "channel": "orders",
        "broker": "amqp",
        "messages": [
            {"data": json.dumps({"n": 1}), "message_id": "m1", "redelivered": False},
            {"data": "plain text", "message_id": "m2", "redelivered": True},
            {"data": json.dumps({"n": 3}), "message_id": None, "redelivered": False},
        ],
    }
    records = inbox_messages(_event(batch))
    assert [r["message_id"] for r in records] == [
        "pubsub:orders:41/0",
        "pubsub:orders:41/1",
        "pubsub:orders:41/2",
    ]
    assert [r["payload"] for r in records] == [{"n": 1}, {"value": "plain text"}, {"n": 3}]
    # The event id stays the id's last ":" part, which is how a replay finds the event again.
    assert {r["message_id"].rsplit(":", 1)[-1].split("/", 1)[0] for r in records} == {"41"}


def test_anything_else_a_trigger_stored_is_no_message() -> None:
    assert inbox_messages(_event({"type": "subscribe", "channel": "orders"})) == []
    assert inbox_messages(_event(None)) == []
    assert inbox_messages(SimpleNamespace(id=1, timestamp=AT, extra={"payload": {"type": "message"}})) == []
