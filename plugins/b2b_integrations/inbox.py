"""A flow's inbox: the messages of its asset events, reading them from the stored position, and the position
after a run.

Event-driven flows (webhook, app event, pub/sub) receive messages as events on their inbox asset. The first
step reads every event after the position kept in the asset's state store (not only those that triggered
the run); the last step commits the new position once all went well (``operators/base.StepOperator``). A
position is ``{timestamp, ids}``: the newest event's instant and the message ids seen at it, because reads
are inclusive of that instant.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from b2b_integrations.staging import WEBHOOK_KEY

Position = dict[str, Any]


def inbox_messages(event: Any) -> list[dict[str, Any]]:
    """The messages of an inbox asset event, each {message_id, received_at, payload | payload_key}: the
    webhooks stored together in it, or the pub/sub message the triggerer recorded (``from_trigger``);
    none for anything else."""
    extra = event.extra or {}
    if WEBHOOK_KEY in extra:
        return list(extra[WEBHOOK_KEY])
    message = extra.get("payload") if extra.get("from_trigger") else None
    if not isinstance(message, dict) or message.get("type") not in ("message", "messages"):
        return []
    received = event.timestamp.isoformat() if getattr(event, "timestamp", None) else None
    message_id = f"pubsub:{message.get('channel')}:{event.id}"
    if message["type"] == "message":
        return [{"message_id": message_id, "received_at": received, "payload": _message_data(message)}]
    # Several queue messages stored as one event (RabbitMQ batching): one record each, in delivery order,
    # numbered after a "/" so the event id stays the id's last ":" part (replay finds the event by it).
    return [
        {"message_id": f"{message_id}/{i}", "received_at": received, "payload": _message_data(item)}
        for i, item in enumerate(message.get("messages") or [])
        if isinstance(item, dict)
    ]


def _message_data(message: dict[str, Any]) -> Any:
    data = message.get("data")
    try:
        return json.loads(data) if isinstance(data, str) else data
    except json.JSONDecodeError:
        return {"value": data}  # not JSON: the text itself, as one field


def next_position(
    position: Position | None, fetched: list[tuple[Any, Any]], unreadable: list[datetime]
) -> tuple[list[tuple[Any, Any]], Position | None]:
    """The (event, message) pairs not seen at ``position``, and the position past everything read.

    An event the Execution API cannot return (``unreadable``) is skipped: its messages' ids are unknown,
    so the position moves past its instant.
    """
    seen = set(position["ids"]) if position else set()
    fresh = [(e, m) for e, m in fetched if m["message_id"] not in seen]
    newest = max((e.timestamp for e, _ in fetched), default=None)
    after = position
    if newest is not None:
        at_newest = [m["message_id"] for e, m in fetched if e.timestamp == newest]
        after = {"timestamp": newest.isoformat(), "ids": at_newest}
    if unreadable and (newest is None or max(unreadable) >= newest):
        after = {"timestamp": (max(unreadable) + _MICROSECOND).isoformat(), "ids": []}
    return fresh, after


def read_inbox(
    accessor: Any, after: str | None, log: Any, where: str
) -> tuple[list[tuple[Any, Any]], list[datetime]]:
    """(event, message) pairs on the inbox from ``after`` (inclusive), and the instants of events the
    Execution API cannot return.

    The API answers a range of events as one response, so one event it cannot serialise (a message
    nested too deep, a NaN) fails every read that includes it, and the position could never pass it.
    Such an event is found by halving the time window (about 50 reads, only when a read failed with
    500 while other reads work); the events before it are read, its instant is reported, and reading
    goes on just after it.
    """
    found: list[tuple[Any, Any]] = []
    unreadable: list[datetime] = []
    low = after
    while True:
        try:
            return [*found, *_window(accessor, low, None)], unreadable
        except Exception as e:
            if api_status(e) != 500:
                raise
            error = e
        start = datetime.fromisoformat(low) if low else datetime(2000, 1, 1, tzinfo=UTC)
        good, bad = start - _MICROSECOND, datetime.now(UTC) + timedelta(days=1)
        readable: list[tuple[Any, Any]] = []
        if _try_window(accessor, low, bad) is not None:
            raise error  # the failing read is not about one event in the window: not ours to skip
        while bad - good > _MICROSECOND:
            middle = good + (bad - good) // 2
            events = _try_window(accessor, low, middle)
            if events is None:
                bad = middle
            else:
                good, readable = middle, events
        if _try_window(accessor, bad.isoformat(), bad) is not None:
            raise error  # that instant reads now: the failures were not about one event
        log.warning("%s: the inbox event at %s cannot be read; reading past it", where, bad)
        found.extend(readable)
        unreadable.append(bad)
        low = (bad + _MICROSECOND).isoformat()


def api_status(error: BaseException) -> int | None:
    """The HTTP status of a failed Execution API call: in a worker the supervisor hands the task an
    ``AirflowRuntimeError`` carrying it; under ``dag.test()`` the client's ``ServerResponseError``."""
    detail = getattr(getattr(error, "error", None), "detail", None)
    if isinstance(detail, dict) and isinstance(detail.get("status_code"), int):
        return int(detail["status_code"])
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


_MICROSECOND = timedelta(microseconds=1)


def unreadable_event_id(at: datetime) -> str:
    """The quarantine id of an inbox event the Execution API cannot return (its message ids are unknown)."""
    return f"event@{at.isoformat()}"


def _window(accessor: Any, after: str | None, before: datetime | None) -> list[tuple[Any, Any]]:
    accessor.after(after)
    accessor.before(before.isoformat() if before is not None else None)
    return [(e, message) for e in accessor for message in inbox_messages(e)]


def _try_window(accessor: Any, after: str | None, before: datetime) -> list[tuple[Any, Any]] | None:
    """The window's events, or None when the API answers 500 for it (other failures raise)."""
    try:
        return _window(accessor, after, before)
    except Exception as e:
        if api_status(e) != 500:
            raise
        return None
