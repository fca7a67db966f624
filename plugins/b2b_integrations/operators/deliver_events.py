"""Deliver a run's app events to the customer's third party: signed webhook or Redis pub/sub."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from b2b_integrations.clients.sql import get_db_hook
from b2b_integrations.errors import FatalStepError
from b2b_integrations.events.delivery import deliver
from b2b_integrations.events.envelope import normalize_instant
from b2b_integrations.events.ordering import OutgoingEvent, key_of
from b2b_integrations.operators.base import StepOperator
from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.state import event_deliveries as ledger

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context


def outgoing_events(
    frame: pd.DataFrame, id_field: str, time_field: str, key_field: str
) -> list[OutgoingEvent]:
    """The run's records as events: id, ordering time and key from the named fields (our own inbox
    columns as the fallback), the payload without our ``_b2b_*`` columns."""
    records = json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    events = []
    for number, record in enumerate(records, 1):
        payload = {k: v for k, v in record.items() if not k.startswith("_b2b_")}
        event_id = record.get(id_field) or record.get("_b2b_message_id")
        instant = record.get(time_field) or record.get("_b2b_received_at")
        if not event_id or not instant:
            raise FatalStepError(
                f"record {number} has no {id_field!r} (event id) or no {time_field!r} (time)"
            )
        try:
            occurred = normalize_instant(str(instant))
        except ValueError as e:
            raise FatalStepError(
                f"record {number} (event {event_id}): {time_field} {instant!r}: {e}"
            ) from None
        key = key_of(payload, key_field) or str(event_id)  # no key: the event is its own lane
        events.append(OutgoingEvent(str(event_id), key, occurred, payload))
    return events


def bound_target(target: dict[str, Any], conn_id: str | None) -> dict[str, Any]:
    """The target with its connection id in place of the template's slot name."""
    return {**target, "connection": conn_id} if conn_id else dict(target)


class DeliverEventsOperator(StepOperator):
    """
    Send each input record (an app event, or what a transform made of it) to the customer's third party,
    at most once per event and target, in order per key, with retries, and dead-letter what the retry
    budget cannot deliver.

    :param db_conn_id: Connection of the database holding the delivery ledger and the dead letters.
    :param target: ``{type: webhook, endpoint, timeout}``, ``{type: api, method, endpoint, body, auth}`` or
        ``{type: redis, channel}``; optional ``name`` (ledger key, default the type). (templated)
    :param target_conn_id: Airflow connection of the target (the customer's id for the target's slot).
    :param key: Dotted path of the ordering key in each event (default ``data.id``): events of one key are
        sent oldest first and an event older than one already delivered is never sent.
    :param id_field: Field holding the event id (the ``webhook-id``); default ``id``.
    :param time_field: Field holding the event time; default ``occurred_at``.
    :param coalesce: Send only the newest event per key of a run.
    :param concurrency: Keys delivered in parallel (each key's events stay in order).
    :param retry_attempts: Tries per event before it is dead-lettered.
    :param retry_base_seconds: First retry wait; doubles per try, with jitter, up to retry_max_seconds.
    :param retry_max_seconds: Longest wait between tries.
    """

    template_fields: Sequence[str] = ("target", "key")
    ui_color = "#fbeee8"

    def __init__(
        self,
        *,
        db_conn_id: str,
        target: dict[str, Any],
        target_conn_id: str | None = None,
        key: str = "data.id",
        id_field: str = "id",
        time_field: str = "occurred_at",
        coalesce: bool = False,
        concurrency: int = 4,
        retry_attempts: int = 5,
        retry_base_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.db_conn_id = db_conn_id
        self.target = target
        self.target_conn_id = target_conn_id
        self.key = key
        self.id_field = id_field
        self.time_field = time_field
        self.coalesce = coalesce
        self.concurrency = concurrency
        self.retry = RetryPolicy(
            attempts=retry_attempts, base_seconds=retry_base_seconds, max_seconds=retry_max_seconds
        )

    def run_step(self, context: Context) -> dict[str, Any]:
        frame = self.load_input(context)
        if frame is None or not len(frame):
            self.log.info("No events to deliver")
            return {"events": 0, "delivered": 0, "already_delivered": 0, "superseded": 0, "dead_lettered": 0}
        events = outgoing_events(frame, self.id_field, self.time_field, self.key)
        target_name = str(self.target.get("name") or self.target.get("type", "target"))
        scope = ledger.TargetScope(self.customer_id, self.integration, self.flow, target_name)
        hook, _ = get_db_hook(self.db_conn_id)
        with closing(hook.get_conn()) as conn:
            try:
                counts = deliver(
                    events,
                    conn,
                    hook.placeholder,
                    scope,
                    bound_target(self.target, self.target_conn_id),
                    self.retry,
                    self.coalesce,
                    self.concurrency,
                    self.log,
                )
            except (KeyError, ValueError) as e:
                raise FatalStepError(f"target {target_name}: {e}") from None
        if counts["dead_lettered"]:
            self.log.warning(
                "%s: %d event(s) dead-lettered for %s (table %s); replay with: python -m b2b_integrations "
                "replay-dead-letters %s %s %s",
                self.where,
                counts["dead_lettered"],
                target_name,
                ledger.DEAD_LETTERS_TABLE,
                self.customer_id,
                self.integration,
                self.flow,
            )
        return counts
