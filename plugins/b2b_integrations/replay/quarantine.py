"""Queue quarantined inbox messages into their inbox again, each once, as a new asset event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from b2b_integrations.naming import inbox_asset_uri
from b2b_integrations.state.quarantine import KEY_PREFIX, REPLAY_MARK, UNREADABLE_PREFIX, entry_key


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

    from b2b_integrations.webhooks.store import record_inbox_event

    asset = session.scalar(
        sa.select(AssetModel).where(AssetModel.uri == inbox_asset_uri(customer_id, integration, flow))
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
            record_inbox_event(session, asset, [again])
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


# The endpoints refuse JSON nested deeper than this (docs/patterns/event_driven_import.md, "JSON accepted
# by the endpoints"). An inline message nested much deeper crashes the scheduler when it validates the run
# that consumes its event (pydantic's recursion limit), so a replay must never write one.
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
