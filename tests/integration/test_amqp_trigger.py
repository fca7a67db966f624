"""The RabbitMQ trigger against the real broker (127.0.0.1:5672), driven by Airflow's own shared-stream
manager the way the triggerer drives it: a message is acknowledged only once the event made from it is
confirmed stored, anything else is delivered again, and a body that is not text is dead-lettered."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator

import amqp
import pytest
from airflow.triggers.shared_stream import SharedStreamManager

from b2b_integrations.triggers.amqp import AmqpMessageTrigger

CONN_ID = "b2b_test_amqp"
os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
def broker() -> Iterator[amqp.Channel]:
    connection = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    channel = connection.channel()
    try:
        yield channel
    finally:
        connection.close()


@pytest.fixture
def queue(broker: amqp.Channel) -> Iterator[str]:
    name = f"b2b-test-{uuid.uuid4().hex[:8]}"
    broker.queue_declare(f"{name}.dead", durable=True, auto_delete=False)
    broker.queue_declare(
        name,
        durable=True,
        auto_delete=False,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{name}.dead"},
    )
    try:
        yield name
    finally:
        broker.queue_delete(name)
        broker.queue_delete(f"{name}.dead")


def publish(channel: amqp.Channel, queue: str, bodies: list[bytes]) -> None:
    for i, body in enumerate(bodies):
        channel.basic_publish(amqp.Message(body, delivery_mode=2, message_id=f"m{i}"), routing_key=queue)


def wait_queue(
    channel: amqp.Channel, queue: str, ready: int, consumers: int = 0, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        _, messages, consumer_count = channel.queue_declare(queue, passive=True)
        if (messages, consumer_count) == (ready, consumers):
            return
        assert time.monotonic() < deadline, f"{queue}: {messages} ready, {consumer_count} consumers"
        time.sleep(0.05)


async def consume(queue: str, count: int, confirm: int, **batching: float) -> list[dict]:
    """Take events of ``count`` messages the way the triggerer's runner does (bind each to its raw event),
    confirm the first ``confirm`` events stored, then stop as a killed or restarted triggerer would.
    ``batching``: the trigger's batch_size and batch_wait_seconds."""
    manager = SharedStreamManager(ack_timeout=60)
    trigger = AmqpMessageTrigger(queue_name=queue, amqp_conn_id=CONN_ID, prefetch_count=50, **batching)
    key = trigger.shared_stream_key()
    events = trigger.filter_shared_stream(manager.subscribe(trigger_id=1, trigger=trigger, key=key))
    payloads, seqs = [], []
    async with asyncio.timeout(30):
        async for event in events:
            seqs.append(manager.bind_pending_event(trigger_id=1, key=key))
            payloads.append(event.payload)
            if sum(len(p.get("messages", [p])) for p in payloads) >= count:
                break
    manager.confirm_persisted(seqs[:confirm])
    await events.aclose()
    # Unsubscribing stops the group: its advance pump acks what is resolved, then the connection closes.
    await manager.unsubscribe(1, key)
    return payloads


def test_only_messages_whose_events_were_stored_are_acknowledged(broker: amqp.Channel, queue: str) -> None:
    bodies = [f'{{"order_id": "PO-{i}"}}'.encode() for i in range(10)]
    publish(broker, queue, bodies)

    first = asyncio.run(consume(queue, count=10, confirm=6))
    assert [p["data"] for p in first] == [b.decode() for b in bodies]
    assert first[0] | {"data": None} == {
        "type": "message",
        "channel": queue,
        "data": None,
        "broker": "amqp",
        "message_id": "m0",
        "redelivered": False,
    }
    # The four whose events were never confirmed stored are back in the queue, in order, as redeliveries.
    wait_queue(broker, queue, ready=4)
    again = asyncio.run(consume(queue, count=4, confirm=4))
    assert [(p["data"], p["redelivered"]) for p in again] == [(b.decode(), True) for b in bodies[6:]]
    wait_queue(broker, queue, ready=0)


def test_a_body_that_is_not_text_is_dead_lettered_and_the_stream_goes_on(
    broker: amqp.Channel, queue: str
) -> None:
    publish(broker, queue, [b'{"n": 1}', b"\xff\xfe not utf-8", b'{"n": 3}'])
    payloads = asyncio.run(consume(queue, count=2, confirm=2))
    assert [p["data"] for p in payloads] == ['{"n": 1}', '{"n": 3}']
    wait_queue(broker, queue, ready=0)
    wait_queue(broker, f"{queue}.dead", ready=1)
    message = broker.basic_get(f"{queue}.dead", no_ack=True)
    assert message.body == b"\xff\xfe not utf-8"


def test_a_missing_queue_is_declared_durable_and_a_refused_login_names_queue_and_connection_only(
    broker: amqp.Channel,
) -> None:
    name = f"b2b-test-{uuid.uuid4().hex[:8]}"

    def declared() -> bool:
        # A passive declare of a missing queue closes its channel: one throwaway connection per look.
        connection = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
        connection.connect()
        try:
            connection.channel().queue_declare(name, durable=True, passive=True)
            return True
        except amqp.exceptions.NotFound:
            return False
        finally:
            connection.close()

    async def consumer_declares_the_queue() -> None:
        manager = SharedStreamManager()
        trigger = AmqpMessageTrigger(queue_name=name, amqp_conn_id=CONN_ID)
        events = trigger.filter_shared_stream(
            manager.subscribe(trigger_id=1, trigger=trigger, key=trigger.shared_stream_key())
        )
        waiting = asyncio.ensure_future(anext(events))  # starts the group's poll, which opens the stream
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(declared):
            assert time.monotonic() < deadline, f"{name} was not declared"
        waiting.cancel()
        await manager.stop_all()

    assert not declared()
    try:
        asyncio.run(consumer_declares_the_queue())
    finally:
        broker.queue_delete(name)

    secret = "wr0ng-Pa55word"
    os.environ["AIRFLOW_CONN_B2B_TEST_AMQP_BAD"] = f"amqp://guest:{secret}@127.0.0.1:5672/"

    async def refused() -> None:
        manager = SharedStreamManager()
        trigger = AmqpMessageTrigger(queue_name="orders", amqp_conn_id="b2b_test_amqp_bad")
        events = trigger.filter_shared_stream(
            manager.subscribe(trigger_id=1, trigger=trigger, key=trigger.shared_stream_key())
        )
        async with asyncio.timeout(30):
            await anext(events)

    with pytest.raises(RuntimeError) as error:
        asyncio.run(refused())
    assert "cannot consume queue 'orders' (connection b2b_test_amqp_bad)" in str(error.value)
    assert secret not in str(error.value)


def test_a_batch_is_one_event_acknowledged_only_once_it_is_stored(broker: amqp.Channel, queue: str) -> None:
    bodies = [f'{{"order_id": "PO-{i}"}}'.encode() for i in range(10)]
    publish(broker, queue, bodies)  # all waiting before the consumer starts: they arrive together

    events = asyncio.run(consume(queue, count=10, confirm=1, batch_size=4, batch_wait_seconds=2.0))
    taken = [m for p in events for m in p["messages"]]
    assert [m["data"] for m in taken] == [b.decode() for b in bodies]  # every message once, in order
    assert [m["message_id"] for m in taken] == [f"m{i}" for i in range(10)]
    assert all(p["type"] == "messages" and p["channel"] == queue for p in events)
    assert max(len(p["messages"]) for p in events) > 1 and all(len(p["messages"]) <= 4 for p in events)
    # Only the first event was stored: its messages are acknowledged, every other one comes again.
    stored = len(events[0]["messages"])
    wait_queue(broker, queue, ready=10 - stored)
    again = asyncio.run(consume(queue, count=10 - stored, confirm=99, batch_size=4, batch_wait_seconds=2))
    redelivered = [(m["data"], m["redelivered"]) for p in again for m in p["messages"]]
    assert redelivered == [(b.decode(), True) for b in bodies[stored:]]
    wait_queue(broker, queue, ready=0)


def test_a_body_that_is_not_text_leaves_a_batch_alone_and_is_dead_lettered(
    broker: amqp.Channel, queue: str
) -> None:
    publish(broker, queue, [b'{"n": 1}', b"\xff\xfe not utf-8", b'{"n": 3}'])
    events = asyncio.run(consume(queue, count=2, confirm=99, batch_size=10, batch_wait_seconds=1.0))
    assert [m["data"] for p in events for m in p["messages"]] == ['{"n": 1}', '{"n": 3}']
    wait_queue(broker, queue, ready=0)
    wait_queue(broker, f"{queue}.dead", ready=1)
    assert broker.basic_get(f"{queue}.dead", no_ack=True).body == b"\xff\xfe not utf-8"


def test_batch_options_are_checked() -> None:
    with pytest.raises(ValueError, match="batch_size must be 1..500"):
        AmqpMessageTrigger(queue_name="q", batch_size=0)
    with pytest.raises(ValueError, match=r"batch_size \(60\) must not exceed prefetch_count \(50\)"):
        AmqpMessageTrigger(queue_name="q", prefetch_count=50, batch_size=60)
    with pytest.raises(ValueError, match="batch_wait_seconds must be 0..10"):
        AmqpMessageTrigger(queue_name="q", batch_size=5, batch_wait_seconds=-1)
    # Unbatched, the serialized trigger is what it was before batching existed.
    assert "batch_size" not in AmqpMessageTrigger(queue_name="q").serialize()[1]
