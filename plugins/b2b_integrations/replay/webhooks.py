"""Queue a stored webhook into its inbox again, so its flow processes it once more."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from b2b_integrations.staging import WEBHOOK_KEY
from b2b_integrations.state.quarantine import REPLAY_MARK
from b2b_integrations.webhooks.store import receipt_event_id, record_inbox_event


def replay_webhook(customer_id: str, integration: str, flow: str, message_id: str, session: Any) -> int:
    """Queue a stored webhook again, as a new asset event (``replay_of``), so its flow processes it once
    more; return the new event's id. ``LookupError`` if no such message was stored."""
    from airflow.models.asset import AssetEvent, AssetModel

    event_id = receipt_event_id(customer_id, integration, flow, message_id, session)
    original = session.get(AssetEvent, event_id) if event_id is not None else None
    if original is None:
        raise LookupError(
            f"no stored webhook {message_id!r} for customer {customer_id}, {integration}/{flow}"
        )
    asset = session.get(AssetModel, original.asset_id)
    stored = next((m for m in original.extra[WEBHOOK_KEY] if m["message_id"] == message_id), None)
    if stored is None:
        raise LookupError(f"webhook {message_id!r} is not in its asset event {original.id}")
    again = {
        **stored,
        "message_id": f"{message_id}{REPLAY_MARK}{datetime.now(UTC):%Y%m%dT%H%M%S%f}",
        "replay_of": message_id,
    }
    return record_inbox_event(session, asset, [again])
