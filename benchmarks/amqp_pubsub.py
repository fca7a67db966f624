"""Durable pub/sub (RabbitMQ) trigger: messages/s from the queue to stored asset events on a real Airflow,
against a floor on the same path, and 0 lost with the triggerer SIGKILLed mid-stream.

Starts the dag-processor and the triggerer (tests/airflow_stack.py: throwaway PostgreSQL metadata DB) with one
customer (``benchco``) whose flow is triggered by ``pubsub`` with ``broker: rabbitmq``, and, in a DAG file of
its own, a floor: the same aio-pika consumer in a trigger that acks each message on arrival, before its event
is stored (at most once, benchmarks/amqp_floor.py). The scheduler is not started, so no consumer runs compete
with the triggerer for the cores: the figures are the trigger path (broker -> triggerer -> metadata DB).
Phases, each on its own durable queue on 127.0.0.1:5672 (guest/guest), N messages (default 1,000):
- ours: once the watcher consumes, publish N, then wait until N messages are stored; prints messages/s
  (stored / time from the first publish to the last message stored) and the publish rate;
- ours batched: the same on a second flow whose trigger stores up to ``--batch-size`` messages (default
  100, waiting at most ``--batch-wait`` s, default 0.5) as one asset event; prints batched / unbatched;
- floor: the same for the ack-on-receipt trigger (one event per message); prints ours / floor;
- broker: an aio-pika consumer alone in this process (prefetch 200, one ack per message): the broker's own
  consume-and-ack rate on this host;
- kill (on the batched flow): publish N, SIGKILL the triggerer once a fifth is stored, start it again, wait until every message is
  stored; prints lost (must be 0), stored twice (at most the messages in flight: the prefetch) and the time
  from the kill to the last one stored (includes the 10 s after which a dead triggerer's watchers move).
Each message carries its own id, so lost and duplicates are counted by id. A run that lost a message in
any phase, or stored more twice than the prefetch, prints what is wrong and no figure, and exits 1.
Takes 3-5 minutes on 2 cores.
Run: .venv/bin/python benchmarks/amqp_pubsub.py [--messages N --prefetch P --batch-size B --batch-wait S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import amqp  # noqa: E402

from airflow_stack import AirflowStack, start_airflow_stack  # noqa: E402  (test support)
from helpers import write_include  # noqa: E402

BENCH = Path(__file__).resolve().parent
OURS_INBOX = "b2b.benchco.order_events.orders.inbox"
BATCHED_INBOX = "b2b.benchco.order_events.batched.inbox"
FLOOR_INBOX = "bench.floor.inbox"


def channel() -> amqp.Channel:
    connection = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    return connection.channel()


def publish(ch: amqp.Channel, queue: str, tag: str, n: int) -> float:
    start = time.monotonic()
    for i in range(n):
        body = json.dumps({"order_id": f"{tag}-{i:06d}", "status": "confirmed"})
        ch.basic_publish(amqp.Message(body, delivery_mode=2), routing_key=queue)
    return n / (time.monotonic() - start)


def stored_ids(stack: AirflowStack, inbox: str, tag: str) -> Counter:
    """Message ids stored on ``inbox`` (one message per event, or a batch event's messages)."""
    payloads = stack.sql(
        "SELECT e.extra -> 'payload' FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        f"WHERE a.name = '{inbox}' AND e.extra::text LIKE '%{tag}-%'"
    )
    return Counter(
        json.loads(message["data"])["order_id"]
        for (payload,) in payloads
        for message in (payload["messages"] if payload.get("type") == "messages" else [payload])
    )


def stored_events(stack: AirflowStack, inbox: str, tag: str) -> int:
    return stack.sql(
        "SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        f"WHERE a.name = '{inbox}' AND e.extra::text LIKE '%{tag}-%'"
    )[0][0]


def wait_consumer(ch: amqp.Channel, queue: str, stack: AirflowStack) -> None:
    stack.wait_for(
        f"a consumer on {queue}", lambda: ch.queue_declare(queue, passive=True)[2] == 1, timeout=300
    )


def run_phase(stack: AirflowStack, ch: amqp.Channel, queue: str, inbox: str, n: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    wait_consumer(ch, queue, stack)
    start = time.monotonic()
    publish_rate = publish(ch, queue, tag, n)
    counts = stack.wait_for(
        "every message stored",
        lambda: (c := stored_ids(stack, inbox, tag)) and len(c) >= n and c,
        timeout=900,
        every=0.2,
    )
    wall = time.monotonic() - start
    return {
        "stored_per_s": n / wall,
        "publish_per_s": publish_rate,
        "wall_s": wall,
        "lost": n - len(counts),
        "events": stored_events(stack, inbox, tag),
    }


def broker_floor(queue: str, n: int, prefetch: int) -> float:
    import aio_pika

    ch = channel()
    publish(ch, queue, "broker", n)

    async def consume() -> float:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        start = time.monotonic()
        got = 0
        async with connection:
            channel_ = await connection.channel()
            await channel_.set_qos(prefetch_count=prefetch)
            q = await channel_.declare_queue(queue, passive=True)
            async with q.iterator() as deliveries:
                async for message in deliveries:
                    await message.ack()
                    got += 1
                    if got == n:
                        break
        return n / (time.monotonic() - start)

    return asyncio.run(consume())


def kill_phase(stack: AirflowStack, ch: amqp.Channel, queue: str, n: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    wait_consumer(ch, queue, stack)
    publish(ch, queue, tag, n)
    stack.wait_for("a fifth stored", lambda: len(stored_ids(stack, BATCHED_INBOX, tag)) >= n // 5, every=0.1)
    before = sum(stored_ids(stack, BATCHED_INBOX, tag).values())
    stack.kill("triggerer")
    killed = time.monotonic()
    stack.start_component("triggerer")
    counts = stack.wait_for(
        "every message stored after the kill",
        lambda: (c := stored_ids(stack, BATCHED_INBOX, tag)) and len(c) >= n and c,
        timeout=900,
        every=0.2,
    )
    return {
        "stored_before_kill": before,
        "lost": n - len(counts),
        "stored_twice": sum(counts.values()) - len(counts),
        "kill_to_all_stored_s": time.monotonic() - killed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--prefetch", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batch-wait", type=float, default=0.5)
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:6]
    queues = {name: f"b2b-bench-{name}-{suffix}" for name in ("ours", "batched", "floor", "broker")}
    ch = channel()
    for queue in queues.values():
        ch.queue_declare(queue, durable=True, auto_delete=False)

    work = Path(tempfile.mkdtemp(prefix="b2b-bench-amqp-"))
    dags = work / "dags"
    dags.mkdir()
    (dags / "b2b_integrations_dags.py").symlink_to(REPO / "dags" / "b2b_integrations_dags.py")
    from amqp_floor import DAG_FILE

    (dags / "bench_amqp_floor.py").write_text(DAG_FILE.format(queue=queues["floor"]))
    template = {
        "name": "order_events",
        "connections": {"broker": {"type": "amqp"}, "app_db": {"type": "postgres"}},
        "flows": {
            "orders": {
                "trigger": {
                    "type": "pubsub",
                    "broker": "rabbitmq",
                    "channel": queues["ours"],
                    "connection": "broker",
                    "prefetch": args.prefetch,
                },
                "steps": [
                    {"id": "load", "kind": "load", "connection": "app_db", "table": "t", "key": ["id"]}
                ],
            }
        },
    }
    template["flows"]["batched"] = {
        "trigger": {
            **template["flows"]["orders"]["trigger"],
            "channel": queues["batched"],
            "batch_size": args.batch_size,
            "batch_wait_seconds": args.batch_wait,
        },
        "steps": template["flows"]["orders"]["steps"],
    }
    customer = {
        "id": "benchco",
        "name": "Bench Co",
        "integrations": {"order_events": {"connections": {"broker": "bench_rabbit", "app_db": "bench_db"}}},
    }
    include = write_include(work / "include", {"order_events": template}, {"benchco": customer})
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])),
            "AIRFLOW_CONN_BENCH_RABBIT": "amqp://guest:guest@127.0.0.1:5672/",
            "AIRFLOW_CONN_BENCH_DB": "postgresql://postgres@127.0.0.1:5432/postgres",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
        },
        components=("dag-processor", "triggerer"),
    )
    n = args.messages
    try:
        load_start = os.getloadavg()[0]
        ours = run_phase(stack, ch, queues["ours"], OURS_INBOX, n)
        batched = run_phase(stack, ch, queues["batched"], BATCHED_INBOX, n)
        floor = run_phase(stack, ch, queues["floor"], FLOOR_INBOX, n)
        broker = broker_floor(queues["broker"], n, args.prefetch)
        killed = kill_phase(stack, ch, queues["batched"], n)
        # No figure for a run that lost a message (any phase) or stored more twice than were in flight.
        wrong = [f"{name}: lost {phase['lost']}" for name, phase in (("ours", ours), ("batched", batched),
                 ("floor", floor), ("batched, triggerer killed", killed)) if phase["lost"]]  # fmt: skip
        if batched["events"] >= n:
            wrong.append(f"batched: {batched['events']} events for {n} messages, so no batch was made")
        if killed["stored_twice"] > args.prefetch:
            wrong.append(f"stored twice {killed['stored_twice']} > prefetch {args.prefetch}")
        if wrong:
            raise SystemExit("wrong result, no figures:\n  " + "\n  ".join(wrong))
        print(
            f"load average at start: {load_start:.1f}; {n} messages per phase, prefetch {args.prefetch}, "
            f"batches of up to {args.batch_size} (wait {args.batch_wait:g} s)"
        )
        print(
            f"ours (ack after stored): {ours['stored_per_s']:.0f} msg/s stored ({ours['wall_s']:.1f} s), "
            f"published at {ours['publish_per_s']:.0f} msg/s, lost {ours['lost']}, {ours['events']} events"
        )
        print(
            f"ours batched: {batched['stored_per_s']:.0f} msg/s stored ({batched['wall_s']:.1f} s), "
            f"lost {batched['lost']}, {batched['events']} events; "
            f"batched / unbatched = {batched['stored_per_s'] / ours['stored_per_s']:.1f}"
        )
        print(
            f"floor (ack on receipt): {floor['stored_per_s']:.0f} msg/s stored ({floor['wall_s']:.1f} s), "
            f"lost {floor['lost']}; ours / floor = {ours['stored_per_s'] / floor['stored_per_s']:.2f}"
        )
        print(f"broker alone (aio-pika consume + ack): {broker:.0f} msg/s")
        print(
            f"batched, triggerer SIGKILLed after {killed['stored_before_kill']} of {n} stored: lost {killed['lost']}, "
            f"stored twice {killed['stored_twice']}, all stored {killed['kill_to_all_stored_s']:.1f} s after the kill"
        )
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        stack.stop()
        for queue in queues.values():
            ch.queue_delete(queue)
        ch.connection.close()


if __name__ == "__main__":
    main()
