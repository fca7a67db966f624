"""Durable pub/sub on a real Airflow and the real RabbitMQ: messages published before anything listens and
while the triggerer is SIGKILLed mid-stream all become asset events and rows (at least once, counted). The
queue is consumed in batches (several messages per asset event), acknowledged once their event is stored."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import amqp
import pytest

from airflow_stack import AirflowStack, start_airflow_stack
from helpers import PG, write_include
from helpers import pg_rows as rows

pytestmark = pytest.mark.airflow_stack

QUEUE = f"b2b-e2e-{uuid.uuid4().hex[:8]}"
SENT = 300
PREFETCH = 50
BATCH = 20
INBOX = "b2b.rabco.order_events.orders.inbox"
TEMPLATE = {
    "name": "order_events",
    "description": "Order events the partner puts on a RabbitMQ queue.",
    "connections": {"broker": {"type": "amqp"}, "app_db": {"type": "postgres"}},
    "flows": {
        "orders": {
            "trigger": {
                "type": "pubsub",
                "broker": "rabbitmq",
                "channel": QUEUE,
                "connection": "broker",
                "prefetch": PREFETCH,
                "batch_size": BATCH,
                "batch_wait_seconds": 0.5,
            },
            "steps": [
                {
                    "id": "pick",
                    "kind": "transform",
                    "callable": "b2b_integrations.transforms.common.select_columns",
                    "options": {"columns": ["order_id", "status"]},
                },
                {
                    "id": "load_orders",
                    "kind": "load",
                    "connection": "app_db",
                    "table": "amqp_orders",
                    "key": ["order_id"],
                },
            ],
        }
    },
}


@pytest.fixture(scope="module")
def channel() -> Iterator[amqp.Channel]:
    connection = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    channel = connection.channel()
    channel.queue_declare(QUEUE, durable=True, auto_delete=False)
    try:
        yield channel
    finally:
        channel.queue_delete(QUEUE)
        connection.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_db: str, channel: amqp.Channel
) -> Iterator[AirflowStack]:
    include = write_include(
        tmp_path_factory.mktemp("amqp") / "include",
        {"order_events": TEMPLATE},
        {
            "rabco": {
                "id": "rabco",
                "name": "Rab Co",
                "integrations": {
                    "order_events": {"connections": {"broker": "rabco_rabbit", "app_db": "rabco_db"}}
                },
            }
        },
    )
    import psycopg2

    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE amqp_orders (order_id VARCHAR(40) PRIMARY KEY, status VARCHAR(20))")
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_RABCO_RABBIT": "amqp://guest:guest@127.0.0.1:5672/",
            "AIRFLOW_CONN_RABCO_DB": f"{PG}/{pg_db}",
            # A killed triggerer's watchers move to the new one after 10 s (default 30 s).
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
        },
        components=("api-server", "scheduler", "dag-processor", "triggerer"),
    )
    try:
        yield stack
    finally:
        stack.stop()


def publish(channel: amqp.Channel, ids: range) -> None:
    for i in ids:
        body = json.dumps({"order_id": f"PO-{i:05d}", "status": "confirmed"})
        channel.basic_publish(
            amqp.Message(body, delivery_mode=2, message_id=f"PO-{i:05d}"), routing_key=QUEUE
        )


def stored_events(stack: AirflowStack) -> list[dict]:
    """Payloads of the asset events the triggerer stored on the inbox."""
    return [
        extra["payload"]
        for (extra,) in stack.sql(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            f"WHERE a.name = '{INBOX}' AND e.extra::text LIKE '%from_trigger%'"
        )
    ]


def stored(stack: AirflowStack) -> list[dict]:
    """The messages in those events (a batch event holds several)."""
    return [message for payload in stored_events(stack) for message in payload["messages"]]


def test_no_message_is_lost_when_the_triggerer_is_killed_mid_stream(
    stack: AirflowStack, channel: amqp.Channel, pg_db: str
) -> None:
    # Published before the watcher exists: a durable queue keeps them (Redis pub/sub would drop them).
    publish(channel, range(0, SENT // 2))
    stack.wait_for("the triggerer to store the first events", lambda: len(stored(stack)) >= 20, timeout=180)
    publish(channel, range(SENT // 2, SENT))
    at_kill = len(stored(stack))
    stack.kill("triggerer")
    killed = time.monotonic()
    assert at_kill < SENT, "the stream ended before the kill: nothing was in flight"
    stack.start_component("triggerer")

    def all_stored() -> Counter | None:
        counts = Counter(json.loads(p["data"])["order_id"] for p in stored(stack))
        return counts if len(counts) == SENT else None

    counts = stack.wait_for("every message stored as an event", all_stored, timeout=240)
    recovered = time.monotonic() - killed
    _, ready, consumers = channel.queue_declare(QUEUE, passive=True)
    assert (ready, consumers) == (0, 1)
    assert set(counts) == {f"PO-{i:05d}" for i in range(SENT)}  # 0 lost
    duplicates = sum(counts.values()) - SENT
    redelivered = sum(1 for p in stored(stack) if p.get("redelivered"))
    # The kill hit deliveries in flight (they came again), and only those may be stored twice.
    assert 0 < redelivered <= PREFETCH and duplicates <= PREFETCH
    events = stored_events(stack)
    # Batched: fewer events than messages, none over the batch size.
    assert len(events) < SENT and max(len(p["messages"]) for p in events) <= BATCH
    stack.wait_for(
        "every order loaded once",
        lambda: rows(pg_db, "SELECT count(*), count(DISTINCT order_id) FROM amqp_orders") == [(SENT, SENT)],
        timeout=240,
    )
    print(
        f"\namqp e2e: sent {SENT}, stored {sum(counts.values())} messages in {len(events)} events "
        f"({at_kill} messages before the kill), "
        f"0 lost, {duplicates} stored twice, {redelivered} redeliveries, all stored {recovered:.1f} s after "
        f"the kill, rows {SENT}"
    )
