"""Publishing app events into the real metadata DB: each event reaches the inbox of every subscribed customer
flow (filters resolved per customer, echoes suppressed), exactly once per event id."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from b2b_integrations.events.ingest import publish
from b2b_integrations.events.routes import AppEventRoutes
from b2b_integrations.webhooks.receiver import Limits
from b2b_integrations.webhooks.store import MetadataEventStore
from helpers import write_include

TEMPLATE = {
    "name": "billing_export",
    "connections": {"hooks": {"type": "http"}, "app_db": {"type": "postgres"}},
    "flows": {
        "invoices_out": {
            "trigger": {
                "type": "app_event",
                "events": ["invoice.paid"],
                "filter": {"account_id": "${customer.id}"},
            },
            "steps": [
                {
                    "id": "send",
                    "kind": "deliver_events",
                    "db_connection": "app_db",
                    "target": {"type": "webhook", "connection": "hooks"},
                }
            ],
        }
    },
}
CUSTOMERS = ("pubacme", "pubglobex")


@pytest.fixture(scope="module")
def include(tmp_path_factory: pytest.TempPathFactory, airflow_db: str) -> Iterator[Path]:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    from helpers import REPO

    customers = {
        cid: {
            "id": cid,
            "name": cid,
            "integrations": {"billing_export": {"connections": {"hooks": f"{cid}_hooks", "app_db": "app"}}},
        }
        for cid in CUSTOMERS
    }
    root = write_include(
        tmp_path_factory.mktemp("events") / "include", {"billing_export": TEMPLATE}, customers
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("B2B_INCLUDE_DIR", str(root))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert {f"{c}__billing_export__invoices_out" for c in CUSTOMERS} <= set(bag.dags)
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    try:
        yield root
    finally:
        mp.undo()


def _messages(customer: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    uri = f"b2b://{customer}/billing_export/invoices_out/inbox"
    with create_session() as session:
        rows = session.execute(
            sa.select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        ).all()
    return [m for (extra,) in rows for m in extra["b2b_webhooks"]]


def _event(account: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "invoice.paid",
        "id": f"evt_{uuid.uuid4().hex[:10]}",
        "occurred_at": "2026-11-29T08:00:00Z",
        "data": {"account_id": account, "invoice": "INV-1", "amount": "12.50"},
        **overrides,
    }


def _publish(include: Path, body: Any, store: MetadataEventStore | None = None):  # noqa: ANN202
    raw = json.dumps(body).encode()
    return publish(raw, "application/json", AppEventRoutes(include), store or MetadataEventStore(), Limits())


def test_an_event_reaches_only_the_subscribed_customer(include: Path) -> None:
    before = {c: len(_messages(c)) for c in CUSTOMERS}
    event = _event("pubacme")
    answer = _publish(include, event)
    assert answer.status == 202, answer.body
    assert answer.body["events"] == [
        {
            "id": event["id"],
            "type": "invoice.paid",
            "flows": ["pubacme/billing_export/invoices_out"],
            "stored": 1,
            "duplicates": 0,
        }
    ]
    acme = _messages("pubacme")[before["pubacme"] :]
    assert [m["message_id"] for m in acme] == [event["id"]]
    assert acme[0]["payload"] == {**event, "occurred_at": "2026-11-29T08:00:00.000000+00:00"}
    assert len(_messages("pubglobex")) == before["pubglobex"]


def test_a_batch_fans_out_and_a_republish_is_acknowledged_as_duplicates(include: Path) -> None:
    before = {c: len(_messages(c)) for c in CUSTOMERS}
    events = [_event("pubacme"), _event("pubglobex"), _event("pubglobex"), _event("nobody")]
    first = _publish(include, {"events": events})
    assert first.status == 202
    assert [e["stored"] for e in first.body["events"]] == [1, 1, 1, 0]
    again = _publish(include, events)
    assert again.status == 202 and [e["duplicates"] for e in again.body["events"]] == [1, 1, 1, 0]
    assert len(_messages("pubacme")) == before["pubacme"] + 1
    assert len(_messages("pubglobex")) == before["pubglobex"] + 2


def test_an_event_from_the_integration_itself_is_not_sent_back(include: Path) -> None:
    before = len(_messages("pubacme"))
    answer = _publish(include, _event("pubacme", origin="pubacme/billing_export"))
    assert answer.status == 202 and answer.body["events"][0]["flows"] == []
    assert len(_messages("pubacme")) == before


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"not json", "application/json", 400),
        (json.dumps({"type": "invoice.paid"}).encode(), "application/json", 422),
        # Year 1 at +01:00 is before year 1 in UTC: an OverflowError, which was a 500.
        (
            json.dumps(_event("pubacme", occurred_at="0001-01-01T00:00:00+01:00")).encode(),
            "application/json",
            422,
        ),
        (
            b'{"type": "invoice.paid", "id": "e", "occurred_at": "2026-11-29T08:00:00Z", "data": {"n": NaN}}',
            "application/json",
            400,
        ),
        (json.dumps(_event("pubacme")).encode(), "text/plain", 415),
    ],
)
def test_bad_requests_store_nothing(include: Path, body: bytes, content_type: str, status: int) -> None:
    before = len(_messages("pubacme"))
    answer = publish(body, content_type, AppEventRoutes(include), MetadataEventStore(), Limits())
    assert answer.status == status
    if status == 422:
        assert any(e.startswith(("event.id:", "event.occurred_at:")) for e in answer.body["detail"])
    assert len(_messages("pubacme")) == before


def test_storage_down_answers_503_so_the_app_retries(include: Path) -> None:
    import sqlalchemy as sa
    from sqlalchemy.orm import sessionmaker

    dead = sessionmaker(bind=sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none"))
    answer = _publish(include, _event("pubacme"), MetadataEventStore(session_factory=dead.begin))
    assert answer.status == 503 and answer.headers["Retry-After"] == "30"
