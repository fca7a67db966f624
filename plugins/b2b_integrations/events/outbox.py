"""Our app's transactional outbox: rows its transactions insert beside their data changes, read here in id
order and published as app events.

The table (names configurable): ``id`` (increasing, e.g. BIGSERIAL), ``event_type``, ``event_id``,
``occurred_at``, ``data`` (JSON text), ``origin`` (nullable), ``created_at`` (set by the database). The
position (the last id published) is an incremental cursor in ``b2b_sync_cursors`` of the same database,
written only after the publish was acknowledged, so a poller killed mid-batch publishes the batch again
(the events endpoint acknowledges those ids as duplicates).

Ids are allocated when a row is inserted but become visible when its transaction commits, so a slower
transaction can commit a LOWER id after a higher one was read; a plain ``id > cursor`` would skip it for
ever. Rows younger than ``settle_seconds`` are therefore left for the next poll: a row is read only once
every transaction that could still commit a lower id is older than that (keep it above your longest
outbox-writing transaction).
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from b2b_integrations.events.envelope import EventRejected, parse_events
from b2b_integrations.sinks.sql import check_identifiers


@dataclass(frozen=True)
class OutboxTable:
    table: str = "b2b_outbox"
    id: str = "id"
    event_type: str = "event_type"
    event_id: str = "event_id"
    occurred_at: str = "occurred_at"
    data: str = "data"
    origin: str = "origin"
    created_at: str = "created_at"

    def __post_init__(self) -> None:
        columns = (
            self.id,
            self.event_type,
            self.event_id,
            self.occurred_at,
            self.data,
            self.origin,
            self.created_at,
        )
        check_identifiers(self.table, columns)


@dataclass(frozen=True)
class OutboxRow:
    row_id: int
    event: dict[str, Any] | None
    """The event envelope, or None when the row is not a valid event (see ``errors``)."""
    errors: list[str]
    raw: dict[str, Any]


def read_batch(
    conn: Any, p: str, outbox: OutboxTable, after_id: int, limit: int, settle_seconds: float
) -> list[OutboxRow]:
    """Up to ``limit`` rows after ``after_id``, in id order, older than ``settle_seconds``."""
    settled_before = datetime.now(UTC) - timedelta(seconds=settle_seconds)
    o = outbox
    with closing(conn.cursor()) as cur:
        cur.execute(
            f"SELECT {o.id}, {o.event_type}, {o.event_id}, {o.occurred_at}, {o.data}, {o.origin} "
            f"FROM {o.table} WHERE {o.id} > {p} AND {o.created_at} <= {p} ORDER BY {o.id} LIMIT {int(limit)}",
            (after_id, settled_before),
        )
        rows = cur.fetchall()
    conn.commit()
    return [to_event(row) for row in rows]


def to_event(row: tuple[Any, ...]) -> OutboxRow:
    """An outbox row as an event envelope, checked with the same rules as the publish endpoint."""
    row_id, kind, event_id, occurred, data, origin = row
    raw = {"id": row_id, "event_type": kind, "event_id": event_id, "occurred_at": str(occurred), "data": data}
    if isinstance(occurred, datetime):
        occurred = (occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)).isoformat()
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            return OutboxRow(int(row_id), None, ["data: not JSON"], raw)
    envelope = {"type": kind, "id": event_id, "occurred_at": occurred, "data": data}
    if origin is not None:
        envelope["origin"] = origin
    try:
        (event,) = parse_events(envelope)
    except EventRejected as e:
        return OutboxRow(int(row_id), None, [error.removeprefix("event.") for error in e.errors], raw)
    return OutboxRow(int(row_id), event.as_payload(), [], raw)
