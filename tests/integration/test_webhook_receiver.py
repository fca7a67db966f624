"""The webhook receiver in-process (FastAPI TestClient) against the real Airflow metadata database.

The customer's DAGs are parsed and synced with Airflow's own ``sync_bag_to_db``, so the inbox asset
exists exactly as the dag-processor would create it; each accepted webhook must become one asset event.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from b2b_integrations.api.app import create_app
from b2b_integrations.webhooks.receiver import Limits
from b2b_integrations.webhooks.routes import WebhookRoutes
from b2b_integrations.webhooks.store import MetadataEventStore
from helpers import REPO, shipped_template, write_include

SECRET = "whsec_" + base64.b64encode(b"acme-billing-signing-key-0123456").decode()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, airflow_db: str) -> Iterator[Path]:
    """billing_webhooks for customer 'hookco', parsed and synced to the metadata DB."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    shipped = shipped_template("billing_webhooks")
    # The same integration as GitHub- and Stripe-style senders would sign it.
    variants = {}
    for name, scheme in (("billing_github", "github"), ("billing_stripe", "stripe")):
        variant = copy.deepcopy(shipped)
        variant["name"] = name
        variant["flows"]["invoice_events"]["trigger"]["signature"] = scheme
        variants[name] = variant
    connections = {"connections": {"webhook_secret": "hookco_billing", "app_db": "hookco_db"}}
    include = write_include(
        tmp_path_factory.mktemp("hooks") / "include",
        {"billing_webhooks": shipped, **variants},
        {
            "hookco": {
                "id": "hookco",
                "name": "Hook Co",
                "integrations": {name: connections for name in ("billing_webhooks", *variants)},
            }
        },
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("B2B_INCLUDE_DIR", str(include))
    mp.setenv("AIRFLOW_CONN_HOOKCO_BILLING", json.dumps({"conn_type": "generic", "password": SECRET}))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert "hookco__billing_webhooks__invoice_events" in bag.dags
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    try:
        yield include
    finally:
        mp.undo()


@pytest.fixture
def client(deployed: Path) -> TestClient:
    return TestClient(
        create_app(WebhookRoutes(deployed), MetadataEventStore(), Limits(max_bytes=4096, inline_bytes=512))
    )


URL = "/webhooks/hookco/billing_webhooks/invoice_events"


def _signed(
    payload: Any, msg_id: str | None = None, at: float | None = None, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = datetime.fromtimestamp(at or time.time(), tz=UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }
    return body, headers


def _events() -> list[dict[str, Any]]:
    """The stored messages in the asset events of hookco's inbox, oldest first."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            sa.select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == "b2b://hookco/billing_webhooks/invoice_events/inbox")
            .order_by(AssetEvent.id)
        ).all()
    return [message for row in rows for message in row[0]["b2b_webhooks"]]


def test_a_standard_webhooks_delivery_becomes_one_asset_event(client: TestClient) -> None:
    before = len(_events())
    body, headers = _signed(
        {"invoice_id": "INV-1", "status": "paid", "amount_cents": 1250, "currency": "EUR"}
    )
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 202, response.text
    events = _events()
    assert len(events) == before + 1
    assert events[-1]["message_id"] == headers["webhook-id"]
    assert events[-1]["payload"] == {
        "invoice_id": "INV-1",
        "status": "paid",
        "amount_cents": 1250,
        "currency": "EUR",
    }


def test_a_redelivery_is_acknowledged_and_not_stored_again(client: TestClient) -> None:
    body, headers = _signed({"invoice_id": "INV-2"}, msg_id="msg_redelivered")
    assert client.post(URL, content=body, headers=headers).status_code == 202
    before = len(_events())
    again = client.post(URL, content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert len(_events()) == before


UNAUTHORIZED = {
    "error": "unauthorized",
    "detail": "no webhook endpoint here accepts this request's signature; check the URL and the secret",
}


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("tampered", 401),
        ("wrong_secret", 401),
        ("stale", 401),
        ("bad_timestamp", 401),
        ("unsigned_text", 401),
        ("not_json_type", 415),
        ("not_json_body", 400),
        ("oversized", 413),
        ("unknown_customer", 401),
        ("unknown_flow", 401),
    ],
)
def test_rejected_requests_queue_nothing(client: TestClient, case: str, status: int) -> None:
    before = len(_events())
    body, headers = _signed({"invoice_id": "INV-3"})
    url = URL
    if case == "tampered":
        body = body.replace(b"INV-3", b"INV-4")
    elif case == "wrong_secret":
        body, headers = _signed(
            {"invoice_id": "INV-3"}, secret="whsec_" + base64.b64encode(b"not-the-key").decode()
        )
    elif case == "stale":
        body, headers = _signed({"invoice_id": "INV-3"}, at=time.time() - 600)
    elif case == "bad_timestamp":
        headers["webhook-timestamp"] = "yesterday"
    elif case == "unsigned_text":  # the signature is checked first: a forger does not learn about the type
        body, headers = b"invoice=INV-3", {"content-type": "text/plain"}
    elif case == "not_json_type":
        headers["content-type"] = "text/plain"
    elif case == "not_json_body":
        body, headers = b"invoice=INV-3", _signed({})[1]
        headers["webhook-signature"] = Webhook(SECRET).sign(
            headers["webhook-id"],
            datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC),
            body.decode(),
        )
    elif case == "oversized":
        body, headers = _signed({"blob": "x" * 5000})
    elif case == "unknown_customer":
        url = "/webhooks/nobody/billing_webhooks/invoice_events"
    elif case == "unknown_flow":
        url = "/webhooks/hookco/billing_webhooks/nothing_here"
    response = client.post(url, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert len(_events()) == before
    if status == 401:  # unknown routes and bad signatures look the same: nothing to enumerate routes with
        assert response.json() == UNAUTHORIZED


def test_a_large_payload_is_stored_by_reference(client: TestClient) -> None:
    from airflow.utils.session import create_session

    from b2b_integrations.webhooks.store import stored_payload

    payload = {"invoice_id": "INV-big", "lines": [f"line {i}" for i in range(60)]}
    body, headers = _signed(payload)
    assert 512 < len(body) <= 4096
    assert client.post(URL, content=body, headers=headers).status_code == 202
    event = _events()[-1]
    assert "payload" not in event
    import sqlalchemy as sa
    from airflow.models.asset import AssetModel

    with create_session() as session:
        asset_id = session.scalar(
            sa.select(AssetModel.id).where(
                AssetModel.uri == "b2b://hookco/billing_webhooks/invoice_events/inbox"
            )
        )
        assert stored_payload(asset_id, event["payload_key"], session) == payload


def test_storage_down_answers_503_so_the_sender_retries(deployed: Path) -> None:
    import sqlalchemy as sa
    from sqlalchemy.orm import sessionmaker

    dead = sessionmaker(bind=sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none"))
    app = create_app(WebhookRoutes(deployed), MetadataEventStore(session_factory=dead.begin), Limits())
    body, headers = _signed({"invoice_id": "INV-5"})
    response = TestClient(app).post(URL, content=body, headers=headers)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"


def test_twenty_webhooks_in_a_burst_are_all_stored(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    before = len(_events())
    deliveries = [_signed({"invoice_id": f"INV-burst-{i}"}) for i in range(20)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(
            pool.map(lambda d: client.post(URL, content=d[0], headers=d[1]).status_code, deliveries)
        )
    assert statuses == [202] * 20
    assert len(_events()) == before + 20


class _HeldFirstTransaction:
    """Airflow's session factory, whose first transaction waits until ``release`` is set: requests that
    arrive meanwhile queue up behind it, as they do when the database is busy."""

    def __init__(self) -> None:
        import threading

        from airflow.utils.session import create_session

        self.entered = threading.Event()
        self.release = threading.Event()
        self._create = create_session
        self._first = True

    def __call__(self):  # noqa: ANN204
        from contextlib import contextmanager

        @contextmanager
        def session():  # noqa: ANN202
            with self._create() as s:
                if self._first:
                    self._first = False
                    self.entered.set()
                    assert self.release.wait(30)
                yield s

        return session()


def test_webhooks_queued_behind_a_transaction_are_committed_together_each_once(deployed: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import sqlalchemy as sa
    from airflow.utils.session import create_session

    from b2b_integrations.webhooks.store import RECEIPTS

    held = _HeldFirstTransaction()
    store = MetadataEventStore(session_factory=held)
    client = TestClient(create_app(WebhookRoutes(deployed), store, Limits(max_bytes=4096, inline_bytes=512)))
    first = _signed({"invoice_id": "INV-held"})
    queued = [_signed({"invoice_id": f"INV-queued-{i}"}) for i in range(6)]
    queued.append(queued[2])  # a redelivery arriving in the same batch as the original
    before_messages, before_events = len(_events()), _events_of("billing_webhooks")
    with ThreadPoolExecutor(max_workers=8) as pool:
        head = pool.submit(client.post, URL, content=first[0], headers=first[1])
        assert held.entered.wait(30)
        rest = [pool.submit(client.post, URL, content=b, headers=h) for b, h in queued]
        deadline = time.monotonic() + 30
        while len(store._queue) < len(queued) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(store._queue) == len(queued)  # all waiting behind the held transaction
        assert not head.done()  # nobody is answered before their transaction commits
        held.release.set()
        statuses = sorted(f.result().status_code for f in [head, *rest])
    assert statuses == [200] + [202] * 7  # the in-batch redelivery is acknowledged as a duplicate
    assert store.batches == 2
    assert _events_of("billing_webhooks") == before_events + 2  # one asset event per transaction
    messages = _events()[before_messages:]
    ids = [m["message_id"] for m in messages]
    assert sorted(ids) == sorted({h["webhook-id"] for _, h in [first, *queued]})  # each once
    with create_session() as session:
        linked = dict(
            session.execute(
                sa.select(RECEIPTS.c.message_id, RECEIPTS.c.asset_event_id).where(
                    RECEIPTS.c.message_id.in_(ids)
                )
            ).all()
        )
    assert len(linked) == 7 and len(set(linked.values())) == 2


def test_replay_queues_a_stored_webhook_again(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    from b2b_integrations.cli import main

    body, headers = _signed({"invoice_id": "INV-replay"}, msg_id="msg_to_replay")
    assert client.post(URL, content=body, headers=headers).status_code == 202
    before = len(_events())
    assert main(["replay", "hookco", "billing_webhooks", "invoice_events", "msg_to_replay"]) == 0
    events = _events()
    assert len(events) == before + 1
    assert events[-1]["replay_of"] == "msg_to_replay" and events[-1]["payload"] == {
        "invoice_id": "INV-replay"
    }
    assert events[-1]["message_id"].startswith("msg_to_replay#replay-")
    assert main(["replay", "hookco", "billing_webhooks", "invoice_events", "msg_never_sent"]) == 1
    assert "no stored webhook 'msg_never_sent'" in capsys.readouterr().err


def _events_of(integration: str) -> int:
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    uri = f"b2b://hookco/{integration}/invoice_events/inbox"
    with create_session() as session:
        return session.scalar(
            sa.select(sa.func.count())
            .select_from(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
        )


def test_github_and_stripe_style_deliveries_are_accepted(client: TestClient) -> None:
    import hashlib
    import hmac

    body = json.dumps({"invoice_id": "INV-gh", "status": "paid"}).encode()
    github = {
        "content-type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-GitHub-Delivery": f"gh-{uuid.uuid4().hex}",
    }
    url = "/webhooks/hookco/billing_github/invoice_events"
    before = _events_of("billing_github")
    assert client.post(url, content=body, headers=github).status_code == 202
    assert client.post(url, content=body + b" ", headers=github).status_code == 401
    assert _events_of("billing_github") == before + 1

    stamp = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    stripe = {
        "content-type": "application/json",
        "Stripe-Signature": f"t={stamp},v1={digest}",
        "Idempotency-Key": "evt-9",
    }
    url = "/webhooks/hookco/billing_stripe/invoice_events"
    before = _events_of("billing_stripe")
    assert client.post(url, content=body, headers=stripe).status_code == 202
    assert client.post(url, content=body, headers=stripe).status_code == 200  # same event id: a redelivery
    stale = {**stripe, "Stripe-Signature": f"t={stamp - 900},v1=" + hmac.new(
        SECRET.encode(), f"{stamp - 900}.".encode() + body, hashlib.sha256).hexdigest()}  # fmt: skip
    assert client.post(url, content=body, headers=stale).status_code == 401
    assert _events_of("billing_stripe") == before + 1


def test_a_github_form_encoded_delivery_is_stored_as_its_payload_json(client: TestClient) -> None:
    """GitHub's default content type: ``payload=<url-encoded JSON>``, signed over the raw form body."""
    import hashlib
    import hmac
    from urllib.parse import urlencode

    payload = {"invoice_id": "INV-form", "status": "paid", "note": "a & b = c"}
    body = urlencode({"payload": json.dumps(payload)}).encode()

    def github(raw: bytes) -> dict[str, str]:
        return {
            "content-type": "application/x-www-form-urlencoded",
            "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest(),
            "X-GitHub-Delivery": f"gh-{uuid.uuid4().hex}",
        }

    url = "/webhooks/hookco/billing_github/invoice_events"
    before = _events_of("billing_github")
    accepted = client.post(url, content=body, headers=github(body))
    assert accepted.status_code == 202, accepted.text
    assert _events_of("billing_github") == before + 1
    unsigned = client.post(url, content=body, headers={**github(body), "X-Hub-Signature-256": "sha256=00"})
    assert unsigned.status_code == 401
    two_fields = body + b"&other=1"
    refused = client.post(url, content=two_fields, headers=github(two_fields))
    assert refused.status_code == 400 and refused.json()["error"] == "bad_form"
    nan = urlencode({"payload": '{"invoice_id": NaN}'}).encode()
    refused = client.post(url, content=nan, headers=github(nan))
    assert refused.status_code == 400 and refused.json()["reason"] == "non_finite_number"
    assert _events_of("billing_github") == before + 1

    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        extra = session.scalar(
            sa.select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == "b2b://hookco/billing_github/invoice_events/inbox")
            .order_by(AssetEvent.id.desc())
            .limit(1)
        )
    assert extra["b2b_webhooks"][-1]["payload"] == payload


def test_the_store_refuses_a_payload_nested_too_deep_whoever_writes_it(deployed: Path) -> None:
    """A second guard behind the endpoints' JSON policy: one such asset event makes the scheduler exit
    while it reads the event (pydantic's recursion limit), for every customer."""
    from b2b_integrations.net.json_body import MAX_DEPTH, JsonRefused

    route = WebhookRoutes(deployed).find("hookco", "billing_webhooks", "invoice_events")
    assert route is not None
    deep: Any = {"leaf": 1}
    for _ in range(MAX_DEPTH):
        deep = [deep]
    before = len(_events())
    with pytest.raises(JsonRefused, match="deeper than 64"):
        MetadataEventStore().store(route, f"msg_{uuid.uuid4().hex}", deep, b"{}", inline=True)
    assert len(_events()) == before
    # One level less is fine: the limit is the endpoints' limit, no tighter.
    MetadataEventStore().store(route, f"msg_{uuid.uuid4().hex}", deep[0], b"{}", inline=True)
    assert len(_events()) == before + 1
