"""Webhook events stored in Airflow's metadata database: one asset event per message, exactly once.

The receipt row (unique per customer, integration, flow and message id) and the asset event are written in
one transaction, so a redelivery is recognised and a crash can never leave one without the other. The
asset event is what starts the customer's asset-triggered DAG; it carries the payload, or for a large
body the key under which the body sits in the inbox asset's state store (Airflow 3.3), which the
consuming task reads through its ``asset_state_store`` context (tasks have no database access).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from b2b_integrations.staging import WEBHOOK_KEY
from b2b_integrations.webhooks.receiver import StoreUnavailable, WebhookRoute

RECEIPTS = sa.Table(
    "b2b_webhook_receipts",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(60), nullable=False),
    sa.Column("integration", sa.String(60), nullable=False),
    sa.Column("flow", sa.String(60), nullable=False),
    sa.Column("message_id", sa.String(255), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body_bytes", sa.Integer, nullable=False),
    sa.Column("asset_event_id", sa.Integer, nullable=True),
    sa.UniqueConstraint("customer_id", "integration", "flow", "message_id", name="b2b_webhook_receipts_msg"),
)


_CREATE_LOCK = threading.Lock()


class MetadataEventStore:
    """:class:`~.receiver.EventStore` on Airflow's metadata DB (``session_factory``: Airflow's by default)."""

    def __init__(self, session_factory: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        if session_factory is None:
            from airflow.utils.session import create_session

            session_factory = create_session
        self._session = session_factory
        self._table_ready = False

    def store(self, route: WebhookRoute, message_id: str, payload: Any, body: bytes, inline: bool) -> bool:
        from airflow.assets.manager import asset_manager
        from airflow.models.asset import AssetModel
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        now = datetime.now(UTC)
        try:
            with self._session() as session:
                self._ensure_table(session)
                asset = session.scalar(sa.select(AssetModel).where(AssetModel.uri == route.asset_uri))
                if asset is None:
                    raise StoreUnavailable("this flow's DAG is not deployed yet")
                receipt_id = session.execute(
                    sa.insert(RECEIPTS)
                    .values(
                        customer_id=route.customer_id,
                        integration=route.integration,
                        flow=route.flow,
                        message_id=message_id[:255],
                        received_at=now,
                        body_bytes=len(body),
                    )
                    .returning(RECEIPTS.c.id)
                ).scalar_one()
                if inline:
                    reference = {"payload": payload}
                else:
                    reference = {"payload_key": payload_key(message_id)}
                    _state_store_put(asset.id, reference["payload_key"], body.decode("utf-8"), session)
                extra = {WEBHOOK_KEY: {"message_id": message_id, "received_at": now.isoformat(), **reference}}
                event = asset_manager.register_asset_change(
                    asset=asset, extra=extra, source_is_api=True, session=session
                )
                if event is None:
                    raise StoreUnavailable("Airflow did not record the asset event")
                session.execute(
                    sa.update(RECEIPTS).where(RECEIPTS.c.id == receipt_id).values(asset_event_id=event.id)
                )
        except IntegrityError as e:
            if RECEIPTS.name in str(e.orig):
                return False  # the unique receipt: this message was stored before
            # Any other conflict is not a redelivery: acknowledging it would lose the event.
            raise StoreUnavailable(f"the event could not be stored ({type(e.orig).__name__})") from None
        except SQLAlchemyError as e:
            raise StoreUnavailable(f"the event store is unavailable ({type(e).__name__})") from None
        return True

    def _ensure_table(self, session: Any) -> None:
        """Create the receipts table once, in its own transaction (API server workers may race to it)."""
        from sqlalchemy.exc import SQLAlchemyError

        if self._table_ready:
            return
        with _CREATE_LOCK:
            bind = session.get_bind()
            try:
                RECEIPTS.create(bind, checkfirst=True)
            except SQLAlchemyError:
                if not sa.inspect(bind).has_table(RECEIPTS.name):  # another process won the race: fine
                    raise
            self._table_ready = True


def payload_key(message_id: str) -> str:
    """Key of a large webhook body in its inbox asset's state store."""
    return f"b2b_webhook_payload:{message_id[:255]}"


def _state_store_put(asset_id: int, key: str, json_text: str, session: Any) -> None:
    from airflow._shared.state import AssetScope
    from airflow.state import get_state_backend

    get_state_backend().set(AssetScope(asset_id=asset_id), key, json_text, session=session)


def stored_payload(asset_id: int, key: str, session: Any) -> Any:
    """A large webhook's payload from the state store (what the consuming task reads through the API)."""
    import json

    from airflow._shared.state import AssetScope
    from airflow.state import get_state_backend

    text = get_state_backend().get(AssetScope(asset_id=asset_id), key, session=session)
    if text is None:
        raise LookupError(f"no stored webhook payload {key!r}")
    return json.loads(text)


def replay(customer_id: str, integration: str, flow: str, message_id: str, session: Any) -> int:
    """Queue a stored webhook again, as a new asset event (``replay_of``), so its flow processes it once
    more; return the new event's id. ``LookupError`` if no such message was stored."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetEvent, AssetModel

    receipt = session.execute(
        sa.select(RECEIPTS.c.asset_event_id).where(
            RECEIPTS.c.customer_id == customer_id,
            RECEIPTS.c.integration == integration,
            RECEIPTS.c.flow == flow,
            RECEIPTS.c.message_id == message_id,
        )
    ).first()
    original = session.get(AssetEvent, receipt[0]) if receipt and receipt[0] is not None else None
    if original is None:
        raise LookupError(
            f"no stored webhook {message_id!r} for customer {customer_id}, {integration}/{flow}"
        )
    asset = session.get(AssetModel, original.asset_id)
    stored = dict(original.extra[WEBHOOK_KEY])
    extra = {
        WEBHOOK_KEY: {
            **stored,
            "message_id": f"{message_id}#replay-{datetime.now(UTC):%Y%m%dT%H%M%S%f}",
            "replay_of": message_id,
        }
    }
    event = asset_manager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)
    if event is None:
        raise LookupError(f"the inbox asset of {integration}/{flow} is gone (DAG removed?)")
    return int(event.id)
