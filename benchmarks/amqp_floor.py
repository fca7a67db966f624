"""The floor of benchmarks/amqp_pubsub.py: the same queue, the same aio-pika consumer and the same triggerer
path, but each message is acknowledged as soon as it arrives (at most once, as a naive consumer would), so
the difference to ours is the cost of acknowledging only stored events. Imported by the benchmark's
triggerer and dag-processor (PYTHONPATH), never by the package."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class AckOnReceiptTrigger(BaseEventTrigger):
    """One event per message of ``queue_name``; the message is acked before its event is stored."""

    def __init__(self, *, queue_name: str, prefetch_count: int = 200) -> None:
        super().__init__()
        self.queue_name = queue_name
        self.prefetch_count = prefetch_count

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"queue_name": self.queue_name, "prefetch_count": self.prefetch_count},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import aio_pika

        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch_count)
            queue = await channel.declare_queue(self.queue_name, passive=True)
            async with queue.iterator() as deliveries:
                async for message in deliveries:
                    await message.ack()
                    yield TriggerEvent(
                        {"type": "message", "channel": self.queue_name, "data": message.body.decode()}
                    )
        finally:
            await connection.close()


DAG_FILE = """
from airflow.sdk import DAG, Asset, AssetWatcher
from airflow.providers.standard.operators.empty import EmptyOperator

from amqp_floor import AckOnReceiptTrigger

inbox = Asset(
    name="bench.floor.inbox",
    uri="bench://floor/inbox",
    watchers=[AssetWatcher(name="bench.floor", trigger=AckOnReceiptTrigger(queue_name={queue!r}))],
)
with DAG(dag_id="bench_amqp_floor", schedule=inbox):
    EmptyOperator(task_id="noop")
"""
