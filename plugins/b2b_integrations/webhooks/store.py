"""Webhook events stored in Airflow's metadata database, exactly once, committed together (group commit).

Each message gets a receipt row (unique per customer, integration, flow and message id) and lands in an
asset event of its flow's inbox; both are written in one transaction, so a redelivery is recognised and a
crash can never leave one without the other. The asset event is what starts the customer's asset-triggered
DAG; it carries the payloads, or for a large body the key under which the body sits in the inbox asset's
state store (Airflow 3.3), which the consuming task reads through its ``asset_state_store`` context (tasks
have no database access).

Recording an asset event is Airflow's heaviest step here (~6 ms of CPU each, measured: the event row, the
queue rows of the consuming DAGs, alias bookkeeping). Requests that arrive while a transaction is being
written wait and are then written together, all their messages in ONE asset event per inbox, so that cost
is paid per batch, not per webhook. Nobody waits for a timer: a lone request is written at once, and every
request is still answered only after its own transaction committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from b2b_integrations.net.json_body import check_value_depth
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

# One asset event holds at most this many messages and inline payload bytes (its extra is one JSON value).
MAX_BATCH_MESSAGES = 2000
MAX_BATCH_BYTES = 2 * 1024 * 1024

_CREATE_LOCK = threading.Lock()


class Inbox(Protocol):
    """Where a message goes: a customer flow's inbox asset (a :class:`WebhookRoute` is one)."""

    customer_id: str
    integration: str
    flow: str
    asset_uri: str


@dataclass(frozen=True)
class Message:
    """One message for one inbox; ``inline`` False puts the body in the inbox's state store instead."""

    inbox: Inbox
    message_id: str
    payload: Any
    body: bytes
    inline: bool = True


@dataclass
class _Pending:
    """One request's message, waiting for the transaction that stores it."""

    route: Inbox
    message_id: str
    payload: Any
    body: bytes
    inline: bool
    done: bool = False
    stored: bool = False
    error: StoreUnavailable | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.route.customer_id, self.route.integration, self.route.flow, self.message_id[:255])

    @property
    def inline_bytes(self) -> int:
        return len(self.body) if self.inline else 0


class MetadataEventStore:
    """:class:`~.receiver.EventStore` on Airflow's metadata DB (``session_factory``: Airflow's by default).

    Thread-safe; the API server calls it from its thread pool. One thread at a time writes: it takes
    everything queued so far (up to the batch caps) and commits it; the others wait for their message's
    outcome, and one of those still waiting writes the next batch.
    """

    def __init__(self, session_factory: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        if session_factory is None:
            from airflow.utils.session import create_session

            session_factory = create_session
        self._session = session_factory
        self._table_ready = False
        self._turn = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False
        self.batches = 0  # transactions written (for the benchmark's figures)

    def store(self, route: WebhookRoute, message_id: str, payload: Any, body: bytes, inline: bool) -> bool:
        (outcome,) = self.store_many([Message(route, message_id, payload, body, inline)])
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        return outcome

    def store_many(self, messages: list[Message]) -> list[bool | StoreUnavailable]:
        """Store each message once, in as few transactions as the queue allows; for each, True if stored,
        False if it was stored before, or the error that kept it out (nothing raised).

        :raises JsonRefused: a payload nests deeper than the JSON policy allows. The endpoints refuse such
            bodies first; this second guard is for every other writer, since one such event would stop the
            scheduler for every customer.
        """
        for message in messages:
            if message.inline:
                check_value_depth(message.payload)
        items = [_Pending(m.inbox, m.message_id, m.payload, m.body, m.inline) for m in messages]
        with self._turn:
            self._queue.extend(items)
        while True:
            with self._turn:
                while self._writing and not all(i.done for i in items):
                    self._turn.wait()
                if all(i.done for i in items):
                    break
                self._writing = True
                batch = self._take_batch()
            try:
                self._write_batch(batch)
            finally:
                with self._turn:
                    for pending in batch:
                        pending.done = True
                    self._writing = False
                    self._turn.notify_all()
        return [i.error if i.error is not None else i.stored for i in items]

    def _take_batch(self) -> list[_Pending]:
        """The oldest queued messages up to the caps (always at least one). Caller holds ``_turn``."""
        count = size = 0
        for pending in self._queue:
            size += pending.inline_bytes
            if count and (count >= MAX_BATCH_MESSAGES or size > MAX_BATCH_BYTES):
                break
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    def _write_batch(self, batch: list[_Pending]) -> None:
        """Store a batch in one transaction; set each message's outcome (never raises)."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._session() as session:
                self._ensure_table(session)
                self._store_in(session, batch)
            self.batches += 1
        except StoreUnavailable as e:
            self._fail_unsettled(batch, e)
        except SQLAlchemyError as e:
            self._fail_unsettled(
                batch, StoreUnavailable(f"the event store is unavailable ({type(e).__name__})")
            )
        except Exception as e:  # a request must get an answer, never hang
            self._fail_unsettled(
                batch, StoreUnavailable(f"the event could not be stored ({type(e).__name__})")
            )

    @staticmethod
    def _fail_unsettled(batch: list[_Pending], error: StoreUnavailable) -> None:
        # The transaction rolled back: nothing of this batch is stored, whatever was decided inside it.
        for pending in batch:
            if pending.error is None:
                pending.stored = False
                pending.error = error

    def _store_in(self, session: Any, batch: list[_Pending]) -> None:
        from airflow.models.asset import AssetModel

        uris = {p.route.asset_uri for p in batch}
        assets = {a.uri: a for a in session.scalars(sa.select(AssetModel).where(AssetModel.uri.in_(uris)))}
        fresh: list[_Pending] = []
        seen: set[tuple[str, str, str, str]] = set()
        for pending in batch:
            if pending.route.asset_uri not in assets:
                pending.error = StoreUnavailable("this flow's DAG is not deployed yet")
            elif pending.key in seen:
                pending.stored = False  # the same message twice in one batch: a redelivery
            else:
                seen.add(pending.key)
                fresh.append(pending)
        new_keys = _insert_receipts(session, fresh)
        receipts: dict[str, list[int]] = {}
        messages: dict[str, list[dict[str, Any]]] = {}
        for pending in fresh:
            receipt_id = new_keys.get(pending.key)
            pending.stored = receipt_id is not None
            if receipt_id is None:
                continue  # stored by an earlier request
            asset = assets[pending.route.asset_uri]
            message: dict[str, Any] = {
                "message_id": pending.message_id,
                "received_at": pending.received_at.isoformat(),
            }
            if pending.inline:
                message["payload"] = pending.payload
            else:
                message["payload_key"] = payload_key(pending.message_id)
                _state_store_put(asset.id, message["payload_key"], pending.body.decode("utf-8"), session)
            messages.setdefault(asset.uri, []).append(message)
            receipts.setdefault(asset.uri, []).append(receipt_id)
        for uri, batch_messages in messages.items():
            event_id = record_inbox_event(session, assets[uri], batch_messages)
            session.execute(
                sa.update(RECEIPTS).where(RECEIPTS.c.id.in_(receipts[uri])).values(asset_event_id=event_id)
            )

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


def _insert_receipts(session: Any, fresh: list[_Pending]) -> dict[tuple[str, str, str, str], int]:
    """Insert a receipt per message unless one exists; return the new receipts' ids by message key."""
    if not fresh:
        return {}
    rows = [
        {
            "customer_id": p.route.customer_id,
            "integration": p.route.integration,
            "flow": p.route.flow,
            "message_id": p.message_id[:255],
            "received_at": p.received_at,
            "body_bytes": len(p.body),
        }
        for p in fresh
    ]
    dialect = session.get_bind().dialect.name
    columns = (
        RECEIPTS.c.id,
        RECEIPTS.c.customer_id,
        RECEIPTS.c.integration,
        RECEIPTS.c.flow,
        RECEIPTS.c.message_id,
    )
    if dialect in ("postgresql", "sqlite"):
        # One statement; rows that conflict with an earlier receipt are left out of RETURNING.
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(RECEIPTS).values(rows).on_conflict_do_nothing().returning(*columns)
        return {(c, i, f, m): rid for rid, c, i, f, m in session.execute(statement)}
    from sqlalchemy.exc import IntegrityError

    new: dict[tuple[str, str, str, str], int] = {}
    for row in rows:  # other databases: one savepoint per row, a duplicate rolls back only its own insert
        try:
            with session.begin_nested():
                rid = session.execute(sa.insert(RECEIPTS).values(row).returning(RECEIPTS.c.id)).scalar_one()
        except IntegrityError:
            continue
        new[(row["customer_id"], row["integration"], row["flow"], row["message_id"])] = rid
    return new


def record_inbox_event(session: Any, asset: Any, messages: list[dict[str, Any]]) -> int:
    """Queue ``messages`` into the inbox ``asset`` as one asset event (in the caller's transaction); its id."""
    from airflow.assets.manager import asset_manager

    event = asset_manager.register_asset_change(
        asset=asset, extra={WEBHOOK_KEY: messages}, source_is_api=True, session=session
    )
    if event is None:
        raise StoreUnavailable("Airflow did not record the asset event")
    return int(event.id)


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


def receipt_event_id(
    customer_id: str, integration: str, flow: str, message_id: str, session: Any
) -> int | None:
    """The asset event a stored webhook went into, by its receipt; None if no such message was stored."""
    receipt = session.execute(
        sa.select(RECEIPTS.c.asset_event_id).where(
            RECEIPTS.c.customer_id == customer_id,
            RECEIPTS.c.integration == integration,
            RECEIPTS.c.flow == flow,
            RECEIPTS.c.message_id == message_id,
        )
    ).first()
    return receipt[0] if receipt is not None else None
