"""Quarantined inbox messages: kept in the inbox asset's state store, listed and replayed by operators.

An event-driven flow reads its inbox from a stored position. A message that can never succeed (a body the
Execution API cannot return, a customer transform that raises on it, a record missing its load key or
failing a declared column type) must not hold that position back, or every later message waits behind it.
The steps set such a message aside with its reasons; the flow's last step writes one entry per message
here, then moves the position past it.

Why the inbox asset's state store (Airflow's metadata DB) and not a table in the destination database:

- every event-driven flow has an inbox, but not every flow has a database (an ``http_call`` or
  ``deliver`` flow has none); the steps that read the inbox and move its position already reach its state
  store through the Execution API, which is tenant-scoped by construction (one asset per customer,
  integration and flow);
- the original message lives in the metadata DB too (the inbox's asset event and the webhook receipt), so
  a replay re-queues it and marks the entry replayed in ONE transaction: a replay happens once, however
  often the command is run;
- the asset state store has no retention for asset-scoped keys, so an entry stays until replayed.

Entries are written after the flow's work committed and before the position moves; a crash between the
two repeats the run, which writes the same entries again (one key per message id, overwritten).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

KEY_PREFIX = "b2b_quarantine:"
REPLAY_MARK = "#replay-"
UNREADABLE_PREFIX = "event@"  # see operators.base.unreadable_event_id


def entry_key(message_id: str) -> str:
    """State-store key of a quarantined message (the store's keys are at most 512 characters)."""
    return f"{KEY_PREFIX}{message_id[:480]}"


def reason(step: str, text: str, *, field: str | None = None, record: int | None = None) -> dict[str, Any]:
    """One reason a message was set aside: the step, what failed, and where in the message."""
    return {"step": step, "field": field, "record": record, "reason": text}


def merge_reasons(found: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Quarantine findings (``message_id``, ``received_at``, ``reason``) grouped per message, in order."""
    merged: dict[str, dict[str, Any]] = {}
    for item in found:
        entry = merged.setdefault(
            item["message_id"],
            {"message_id": item["message_id"], "received_at": item.get("received_at"), "reasons": []},
        )
        if item["reason"] not in entry["reasons"]:
            entry["reasons"].append(item["reason"])
    return merged


def write_entries(
    store: Any,
    found: Iterable[dict[str, Any]],
    *,
    customer_id: str,
    integration: str,
    flow: str,
    dag_id: str,
    run_id: str,
) -> list[str]:
    """Task side: store one entry per quarantined message through ``store`` (the inbox's
    ``asset_state_store`` accessor); return the message ids."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    merged = merge_reasons(found)
    for message_id, entry in merged.items():
        store.set(
            entry_key(message_id),
            {
                **entry,
                "customer_id": customer_id,
                "integration": integration,
                "flow": flow,
                "dag_id": dag_id,
                "run_id": run_id,
                "quarantined_at": now,
                "replayed_as": None,
                "replayed_at": None,
            },
        )
    return list(merged)


def describe(entry: dict[str, Any]) -> str:
    """``step normalise, record 2, field 'id': ...; step ...`` for a listing."""
    parts = []
    for item in entry.get("reasons") or []:
        where = [f"step {item.get('step')}"]
        if item.get("record") is not None:
            where.append(f"record {item['record']}")
        if item.get("field"):
            where.append(f"field {item['field']!r}")
        parts.append(f"{', '.join(where)}: {item.get('reason')}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- operator side (metadata DB)


@dataclass(frozen=True)
class Quarantined:
    """One quarantined message as the CLI shows it."""

    customer_id: str
    integration: str
    flow: str
    message_id: str
    entry: dict[str, Any]

    @property
    def replayed_as(self) -> str | None:
        return self.entry.get("replayed_as")


def _inbox_uri(customer_id: str, integration: str, flow: str) -> str:
    return f"b2b://{customer_id}/{integration}/{flow}/inbox"


def _parse_inbox_uri(uri: str) -> tuple[str, str, str]:
    customer_id, integration, flow, _ = uri.removeprefix("b2b://").split("/")
    return customer_id, integration, flow


def list_quarantined(
    session: Any, customer_id: str, integration: str | None = None, flow: str | None = None
) -> list[Quarantined]:
    """Every quarantined message of a customer (optionally one integration, one flow), oldest first."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel

    prefix = f"b2b://{customer_id}/"
    query = (
        sa.select(AssetModel.uri, AssetStateStoreModel.key, AssetStateStoreModel.value)
        .join(AssetStateStoreModel, AssetStateStoreModel.asset_id == AssetModel.id)
        .where(AssetModel.uri.startswith(prefix, autoescape=True))
        .where(AssetModel.uri.endswith("/inbox"))
        .where(AssetStateStoreModel.key.startswith(KEY_PREFIX, autoescape=True))
    )
    found = []
    for uri, _key, value in session.execute(query):
        customer, integ, fl = _parse_inbox_uri(uri)
        if customer != customer_id or (integration and integ != integration) or (flow and fl != flow):
            continue
        entry = json.loads(value)
        found.append(Quarantined(customer, integ, fl, entry["message_id"], entry))
    return sorted(found, key=lambda q: (q.entry.get("quarantined_at") or "", q.flow, q.message_id))


def replay_quarantined(
    session: Any, customer_id: str, integration: str, flow: str, message_ids: list[str] | None = None
) -> list[tuple[str, str]]:
    """Re-queue quarantined messages (all not yet replayed when ``message_ids`` is None) into the inbox,
    each as a new asset event, and mark their entries replayed in the same transaction (the caller's
    session commits both). Return (message id, what happened) per message; ``LookupError`` for an id
    that is not quarantined."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel

    asset = session.scalar(
        sa.select(AssetModel).where(AssetModel.uri == _inbox_uri(customer_id, integration, flow))
    )
    if asset is None:
        raise LookupError(f"no inbox for customer {customer_id}, integration {integration}, flow {flow}")
    query = sa.select(AssetStateStoreModel).where(
        AssetStateStoreModel.asset_id == asset.id,
        AssetStateStoreModel.key.startswith(KEY_PREFIX, autoescape=True),
    )
    if message_ids is not None:
        query = query.where(AssetStateStoreModel.key.in_([entry_key(m) for m in message_ids]))
    # Locked until the caller commits, so two concurrent replays of one message queue it once.
    rows = {row.key: row for row in session.scalars(query.with_for_update())}
    wanted = message_ids if message_ids is not None else None
    if wanted is not None:
        missing = [m for m in wanted if entry_key(m) not in rows]
        if missing:
            raise LookupError(
                f"message(s) {missing} are not quarantined for customer {customer_id}, integration "
                f"{integration}, flow {flow}"
            )
    outcomes = []
    for row in sorted(rows.values(), key=lambda r: r.key):
        entry = json.loads(row.value)
        message_id = entry["message_id"]
        if entry.get("replayed_as"):
            outcomes.append((message_id, f"already replayed as {entry['replayed_as']}"))
            continue
        now = datetime.now(UTC)
        new_ids, refused = [], []
        # Each message in an event of its own: a message that fails again is then set aside alone.
        for original in _original_messages(session, customer_id, integration, flow, asset, message_id):
            base_id = original.pop("message_id").split(REPLAY_MARK)[0]
            if (problem := unqueueable(original.get("payload"))) is not None:
                refused.append(f"{base_id} not queued: {problem}; it must be sent again, corrected")
                continue
            again = {
                **original,
                "message_id": f"{base_id}{REPLAY_MARK}{now:%Y%m%dT%H%M%S%f}",
                "replay_of": message_id,
            }
            _record_inbox_event(session, asset, again)
            new_ids.append(again["message_id"])
        replayed_as = ", ".join(new_ids)
        if new_ids:
            row.value = json.dumps(
                {**entry, "replayed_as": replayed_as, "replayed_at": now.isoformat(timespec="seconds")}
            )
        outcomes.append(
            (message_id, "; ".join([*([f"queued again as {replayed_as}"] if new_ids else []), *refused]))
        )
    session.flush()
    return outcomes


# The endpoints refuse JSON nested deeper than this (docs/patterns/event_driven_import.md, "JSON accepted by the endpoints"). An inline
# message nested much deeper crashes the scheduler when it validates the run that consumes its event
# (pydantic's recursion limit), so a replay must never write one.
MAX_DEPTH = 64


def unqueueable(payload: Any) -> str | None:
    """Why an inline payload must not be queued into an inbox again, or None."""
    from b2b_integrations.operators.base import unportable_value

    if _depth(payload) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    found = unportable_value(payload)
    return found[1] if found else None


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return depth


def _original_messages(
    session: Any, customer_id: str, integration: str, flow: str, asset: Any, message_id: str
) -> list[dict[str, Any]]:
    """The stored inbox message(s) (id, payload or payload key, receive time) a quarantined id stands for.

    A replayed message carries ``<original id>#replay-<time>``; its body is the original's. A webhook or
    app event is found through its receipt; a pub/sub message's id names its asset event;
    ``event@<instant>`` (an event the Execution API could not return) stands for every message of the
    inbox's events at that instant.
    """
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent

    from b2b_integrations.inbox import inbox_messages
    from b2b_integrations.webhooks.store import receipt_event_id

    def stored(message: dict[str, Any]) -> dict[str, Any]:
        keep = ("message_id", "payload", "payload_key", "received_at")
        return {k: v for k, v in message.items() if k in keep}

    if message_id.startswith(UNREADABLE_PREFIX):
        at = datetime.fromisoformat(message_id.removeprefix(UNREADABLE_PREFIX))
        events = session.scalars(
            sa.select(AssetEvent)
            .where(AssetEvent.asset_id == asset.id, AssetEvent.timestamp == at)
            .order_by(AssetEvent.id)
        ).all()
        found = [stored(m) for event in events for m in inbox_messages(event)]
        if not found:
            raise LookupError(f"no inbox event at {at.isoformat()} any more")
        return found
    base_id = message_id.split(REPLAY_MARK)[0]
    event_id = receipt_event_id(customer_id, integration, flow, base_id, session)
    pubsub_event = base_id.rsplit(":", 1)[-1].split("/", 1)[0]  # pubsub:<channel>:<event id>[/<n>]
    if event_id is None and base_id.startswith("pubsub:") and pubsub_event.isdigit():
        event_id = int(pubsub_event)
    event = session.get(AssetEvent, event_id) if event_id is not None else None
    if event is None or event.asset_id != asset.id:
        raise LookupError(f"the original of message {message_id!r} is no longer in the inbox")
    for message in inbox_messages(event):
        if message["message_id"] == base_id:
            return [stored(message)]
    raise LookupError(f"message {base_id!r} is not in its asset event {event.id}")


def _record_inbox_event(session: Any, asset: Any, message: dict[str, Any]) -> int:
    from airflow.assets.manager import asset_manager

    from b2b_integrations.staging import WEBHOOK_KEY

    event = asset_manager.register_asset_change(
        asset=asset, extra={WEBHOOK_KEY: [message]}, source_is_api=True, session=session
    )
    if event is None:
        raise RuntimeError("Airflow did not record the asset event")
    return int(event.id)
