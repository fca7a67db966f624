"""RabbitMQ (AMQP 0-9-1) queue as an event source, at least once: a message is acknowledged to the broker
only after the asset event made from it is stored in Airflow's metadata database.

The trigger runs in the triggerer's shared-stream *ack mode* (Airflow 3.3, ``airflow.triggers.shared_stream``):
the producer below owns the broker connection and yields each delivery; the triggerer stores the trigger
event the filter makes of it and only then calls :meth:`AmqpQueueProducer.advance`, which acks. A
triggerer killed in between never acked, so RabbitMQ delivers the message again to the next consumer.

With ``batch_size`` above 1 the producer groups deliveries that arrive together (at most ``batch_size``,
waiting at most ``batch_wait_seconds`` after the first) into one raw event, so the triggerer stores one
asset event of N messages instead of N events (its per-event store sets the rate). The group is acked only
once that one event is stored, so a kill still loses nothing.

Plugged into common-messaging's ``MessageQueueTrigger`` as the ``amqp`` scheme by
:class:`AmqpMessageQueueProvider` (registered through this package's provider info), so a hand-written DAG
can use ``MessageQueueTrigger(scheme="amqp", queue_name=..., amqp_conn_id=...)`` like Kafka or SQS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.messaging.providers.base_provider import BaseMessageQueueProvider
from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer, reject_shared_stream_event

if TYPE_CHECKING:
    from airflow.sdk import Connection

AMQP_SCHEME = "amqp"
DEFAULT_CONN_ID = "amqp_default"
DEFAULT_PREFETCH = 200
# The triggerer fails a subscriber whose queue of unread deliveries passes
# [triggerer] shared_stream_subscriber_queue_size (default 1024); the prefetch bounds that queue.
MAX_PREFETCH = 1000
CONNECT_TIMEOUT_SECONDS = 30.0
# A batch is one asset event whose extra holds every message body: bounded so one event stays small.
MAX_BATCH_SIZE = 500
MAX_BATCH_WAIT_SECONDS = 10.0
DEFAULT_BATCH_WAIT_SECONDS = 1.0
BATCH_TYPE = "messages"


def message_payload(
    queue: str, body: bytes, message_id: str | None, redelivered: bool
) -> dict[str, Any] | None:
    """The asset event payload for one delivery, shaped like the Redis pub/sub trigger's (``type``,
    ``channel``, ``data``) so consumers read both alike; None when the body is not UTF-8 text."""
    try:
        data = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return {
        "type": "message",
        "channel": queue,
        "data": data,
        "broker": AMQP_SCHEME,
        "message_id": message_id,
        "redelivered": redelivered,
    }


def batch_payload(queue: str, messages: Sequence[Any]) -> dict[str, Any]:
    """The asset event payload for deliveries taken together (each body already known to be UTF-8):
    ``type`` ``messages`` and the list of what :func:`message_payload` would hold per message."""
    return {
        "type": BATCH_TYPE,
        "channel": queue,
        "broker": AMQP_SCHEME,
        "messages": [
            {
                "data": message.body.decode("utf-8"),
                "message_id": message.message_id,
                "redelivered": message.redelivered,
            }
            for message in messages
        ],
    }


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def connection_kwargs(conn: Connection) -> dict[str, Any]:
    """aio-pika ``connect`` arguments from an Airflow connection (host, port, login, password, schema =
    virtual host, extra ``ssl``); passed as fields, never as a URL, so no error text can quote the password."""
    extra = conn.extra_dejson or {}
    return {
        "host": conn.host or "localhost",
        "port": int(conn.port or (5671 if extra.get("ssl") else 5672)),
        "login": conn.login or "guest",
        "password": conn.password or "guest",
        "virtualhost": conn.schema or "/",
        "ssl": bool(extra.get("ssl", False)),
    }


def check_options(prefetch_count: int, batch_size: int, batch_wait_seconds: float) -> None:
    """Refuse prefetch and batch settings the consumer cannot honour (ValueError naming the setting)."""
    if not 1 <= prefetch_count <= MAX_PREFETCH:
        raise ValueError(f"prefetch_count must be 1..{MAX_PREFETCH}, got {prefetch_count}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
    if batch_size > prefetch_count:
        # The broker sends at most prefetch_count unacknowledged deliveries: a larger batch never fills.
        raise ValueError(f"batch_size ({batch_size}) must not exceed prefetch_count ({prefetch_count})")
    if not 0 <= batch_wait_seconds <= MAX_BATCH_WAIT_SECONDS:
        raise ValueError(
            f"batch_wait_seconds must be 0..{MAX_BATCH_WAIT_SECONDS:g}, got {batch_wait_seconds}"
        )


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class AmqpQueueProducer(SharedStreamProducer):
    """Consumes one queue with manual acknowledgement; acks, requeues or dead-letters per resolved event."""

    def __init__(
        self,
        *,
        queue_name: str,
        amqp_conn_id: str,
        prefetch_count: int,
        batch_size: int = 1,
        batch_wait_seconds: float = DEFAULT_BATCH_WAIT_SECONDS,
    ) -> None:
        self.queue_name = queue_name
        self.amqp_conn_id = amqp_conn_id
        self.prefetch_count = prefetch_count
        self.batch_size = batch_size
        self.batch_wait_seconds = batch_wait_seconds
        self._connection: Any = None

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        import aio_pika
        from aio_pika.exceptions import ChannelNotFoundEntity
        from airflow.providers.common.compat.connection import get_async_connection

        conn = await get_async_connection(self.amqp_conn_id)
        kwargs = connection_kwargs(conn)
        where = f"queue {self.queue_name!r} (connection {self.amqp_conn_id})"
        try:
            self._connection = await aio_pika.connect(
                **kwargs,
                timeout=CONNECT_TIMEOUT_SECONDS,
                client_properties={"connection_name": f"b2b-integrations {self.queue_name}"},
            )
            channel = await self._connection.channel()
            try:
                queue = await channel.declare_queue(self.queue_name, passive=True)
            except ChannelNotFoundEntity:
                # Declared durable so what is published from now on survives a broker restart; a queue
                # the partner declared (with its own arguments) is used as it is.
                channel = await self._connection.channel()
                queue = await channel.declare_queue(self.queue_name, durable=True)
            await channel.set_qos(prefetch_count=self.prefetch_count)
        except Exception as e:
            raise RuntimeError(
                f"cannot consume {where}: {type(e).__name__}: {scrub(str(e), [kwargs['password']])}"
            ) from None
        async with queue.iterator() as deliveries:
            if self.batch_size == 1:
                async for message in deliveries:
                    yield (
                        message_payload(
                            self.queue_name, message.body, message.message_id, message.redelivered
                        ),
                        message,
                    )
            else:
                async for batch in self._batches(deliveries):
                    yield batch
        raise RuntimeError(f"the broker closed the consumer of {where}")

    async def _batches(self, deliveries: AsyncIterator[Any]) -> AsyncIterator[tuple[Any, Any]]:
        """Raw events of up to ``batch_size`` deliveries each: what arrived within ``batch_wait_seconds``
        of a batch's first. A body that is not text is its own raw event (payload None, to be rejected),
        after the batch of those before it, so deliveries stay in order for the cumulative ack."""
        # The iterator is drained by a task into a queue: waiting on the iterator itself with a timeout
        # would cancel it, and a cancelled aio-pika iterator closes its consumer.
        arrived: asyncio.Queue[Any] = asyncio.Queue()
        ended = object()

        async def pump() -> None:
            try:
                async for message in deliveries:
                    await arrived.put(message)
            finally:
                arrived.put_nowait(ended)

        loop = asyncio.get_running_loop()
        pumping = asyncio.ensure_future(pump())
        try:
            while (first := await arrived.get()) is not ended:
                batch, deadline, last = [first], loop.time() + self.batch_wait_seconds, None
                while len(batch) < self.batch_size:
                    try:
                        message = arrived.get_nowait()  # what already arrived, even with no wait left
                    except asyncio.QueueEmpty:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        try:
                            message = await asyncio.wait_for(arrived.get(), remaining)
                        except TimeoutError:
                            break
                    if message is ended:
                        last = ended
                        break
                    batch.append(message)
                for raw in self._split(batch):
                    yield raw
                if last is ended:
                    break
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping  # raises what ended the iterator, if anything did

    def _split(self, batch: list[Any]) -> list[tuple[Any, Any]]:
        """``batch`` as raw events in delivery order: runs of text bodies together, others alone."""
        raws: list[tuple[Any, Any]] = []
        run: list[Any] = []
        for message in batch:
            if _is_text(message.body):
                run.append(message)
                continue
            if run:
                raws.append((batch_payload(self.queue_name, run), run))
                run = []
            raws.append((None, [message]))
        if run:
            raws.append((batch_payload(self.queue_name, run), run))
        return raws

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        # Deliveries arrive in order on one channel, so a run of clean ones is settled with one
        # cumulative ack (multiple=True) of its last tag; requeue (failed) and dead-letter (rejected:
        # the body was not text) one by one.
        # A batched raw event carries its deliveries as a list: settled together, as its one event was.
        last_clean = None
        for item in batch:
            messages, outcome = item.broker_payload, item.outcome
            if not isinstance(messages, list):
                messages = [messages]
            if outcome.is_clean:
                last_clean = messages[-1]
                continue
            if last_clean is not None:
                await last_clean.ack(multiple=True)
                last_clean = None
            for message in messages:
                if outcome.rejected:
                    await message.reject(requeue=False)
                else:
                    await message.nack(requeue=True)
        if last_clean is not None:
            await last_clean.ack(multiple=True)

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()


class AmqpMessageTrigger(BaseEventTrigger):
    """
    Fire one event per message of a RabbitMQ queue, acknowledging each message only after the event is
    stored (at least once: a message whose event was not stored is delivered again).

    Runs only in the triggerer as an asset watcher (the shared-stream ack mode drives it; ``run`` is not
    used). Triggers of several assets on the same connection and queue share one consumer.

    :param queue_name: The queue to consume (declared durable if it does not exist).
    :param amqp_conn_id: Airflow connection: host, port, login, password, schema = virtual host
        (default ``/``), extra ``{"ssl": true}``.
    :param prefetch_count: Deliveries in flight before acknowledgement (1..1000).
    :param batch_size: Deliveries per event (1..500, at most ``prefetch_count``). Above 1, the deliveries
        that arrive within ``batch_wait_seconds`` of the first become one event whose payload is
        ``{"type": "messages", "channel", "broker", "messages": [{"data", "message_id", "redelivered"}]}``.
    :param batch_wait_seconds: Longest wait for a batch to fill after its first delivery (0..10).
    """

    def __init__(
        self,
        *,
        queue_name: str,
        amqp_conn_id: str = DEFAULT_CONN_ID,
        prefetch_count: int = DEFAULT_PREFETCH,
        batch_size: int = 1,
        batch_wait_seconds: float = DEFAULT_BATCH_WAIT_SECONDS,
    ) -> None:
        super().__init__()
        check_options(prefetch_count, batch_size, batch_wait_seconds)
        self.queue_name = queue_name
        self.amqp_conn_id = amqp_conn_id
        self.prefetch_count = prefetch_count
        self.batch_size = batch_size
        self.batch_wait_seconds = batch_wait_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "queue_name": self.queue_name,
                "amqp_conn_id": self.amqp_conn_id,
                "prefetch_count": self.prefetch_count,
                # Only when batching, so the serialized trigger of an unbatched queue stays as it was.
                **(
                    {"batch_size": self.batch_size, "batch_wait_seconds": self.batch_wait_seconds}
                    if self.batch_size > 1
                    else {}
                ),
            },
        )

    def shared_stream_key(self) -> Hashable:
        return (AMQP_SCHEME, self.amqp_conn_id, self.queue_name)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> AmqpQueueProducer:
        return AmqpQueueProducer(
            queue_name=kwargs["queue_name"],
            amqp_conn_id=kwargs.get("amqp_conn_id", DEFAULT_CONN_ID),
            prefetch_count=kwargs.get("prefetch_count", DEFAULT_PREFETCH),
            batch_size=kwargs.get("batch_size", 1),
            batch_wait_seconds=kwargs.get("batch_wait_seconds", DEFAULT_BATCH_WAIT_SECONDS),
        )

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for payload in shared_stream:
            if payload is None:
                self.log.error(
                    "queue %r: a message whose body is not UTF-8 text is rejected (dead-lettered when the "
                    "queue has a dead-letter exchange)",
                    self.queue_name,
                )
                reject_shared_stream_event()
                continue
            yield TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        raise RuntimeError(
            "AmqpMessageTrigger acknowledges messages only through the triggerer's shared-stream ack mode; "
            "use it as an asset watcher"
        )
        yield  # pragma: no cover - makes this an async generator


class AmqpMessageQueueProvider(BaseMessageQueueProvider):
    """common-messaging queue provider: ``MessageQueueTrigger(scheme="amqp", ...)`` runs
    :class:`AmqpMessageTrigger`, which defines the accepted parameters."""

    scheme = AMQP_SCHEME

    def trigger_class(self) -> type[BaseEventTrigger]:
        return AmqpMessageTrigger
