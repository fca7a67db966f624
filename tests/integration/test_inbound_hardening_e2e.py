"""Hostile requests against the real API server (issue 14): every endpoint refuses what its consumers could
never process with a 400 and a reason (never a 500), forged webhooks learn nothing about which routes
exist, GitHub form deliveries are taken, and callbacks never go into our own network.

One stack, with no ``B2B_CALLBACK_ALLOWED_NETWORKS``: a webhook flow (Standard Webhooks and GitHub), the
sync ``orders`` flow against the demo CRM, and an app-event subscriber, all for the customer ``hardco``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from airflow_stack import AirflowStack, start_airflow_stack
from crm_server import CrmServer
from helpers import PG, shipped_template, write_include

pytestmark = pytest.mark.airflow_stack

SECRET = "whsec_" + base64.b64encode(b"hardco-billing-signing-key-01234").decode()
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"hardco-orders-callback-key-01234").decode()
WEBHOOK = "/b2b/webhooks/hardco/billing_webhooks/invoice_events"
GITHUB = "/b2b/webhooks/hardco/billing_github/invoice_events"
SYNC = "/b2b/sync/hardco/orders/place_order"
SYNC_DAG = "hardco__orders__place_order"
EVENTS = "/b2b/events"
APP_EVENTS_TEMPLATE = {
    "name": "billing_export",
    "connections": {"hooks": {"type": "http"}, "app_db": {"type": "postgres"}},
    "flows": {
        "invoices_out": {
            "trigger": {"type": "app_event", "events": ["invoice.paid"]},
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
# Each was seen to be accepted (then poisoning the consumer) or to give a 500 before the shared JSON policy.
HOSTILE = [
    ("nan", b'{"invoice_id": "INV-h", "amount_cents": NaN}', "non_finite_number"),
    (
        "python_infinity",
        json.dumps({"invoice_id": "INV-h", "x": float("-inf")}).encode(),
        "non_finite_number",
    ),
    (
        "huge_integer",
        b'{"invoice_id": "INV-h", "amount_cents": ' + b"9" * 5000 + b"}",
        "integer_out_of_range",
    ),
    (
        "int64_overflow",
        b'{"invoice_id": "INV-h", "amount_cents": 9223372036854775808}',
        "integer_out_of_range",
    ),
    ("deep_nesting", b"[" * 50_000 + b"]" * 50_000, "too_deep"),
    ("deep_objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "too_deep"),
    ("nul_character", b'{"invoice_id": "INV-\\u0000"}', "unstorable_string"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_db: str, crm: CrmServer) -> Iterator[AirflowStack]:
    github = copy.deepcopy(shipped_template("billing_webhooks"))
    github["name"] = "billing_github"
    github["flows"]["invoice_events"]["trigger"]["signature"] = "github"
    hooks = {"connections": {"webhook_secret": "hardco_billing", "app_db": "hardco_db"}}
    orders = {"payments_api": "hardco_pay", "warehouse_api": "hardco_wh", "callback_secret": "hardco_cb"}
    include = write_include(
        tmp_path_factory.mktemp("hardening") / "include",
        {
            "billing_webhooks": shipped_template("billing_webhooks"),
            "billing_github": github,
            "orders": shipped_template("orders"),
            "billing_export": APP_EVENTS_TEMPLATE,
        },
        {
            "hardco": {
                "id": "hardco",
                "name": "Hard Co",
                "integrations": {
                    "billing_webhooks": hooks,
                    "billing_github": hooks,
                    "orders": {"connections": orders},
                    "billing_export": {"connections": {"hooks": "hardco_hooks", "app_db": "hardco_db"}},
                },
            }
        },
    )
    api = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": crm.port, "password": crm.api_key})
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_HARDCO_BILLING": json.dumps({"conn_type": "generic", "password": SECRET}),
            "AIRFLOW_CONN_HARDCO_DB": f"{PG}/{pg_db}",
            "AIRFLOW_CONN_HARDCO_PAY": api,
            "AIRFLOW_CONN_HARDCO_WH": api,
            "AIRFLOW_CONN_HARDCO_CB": json.dumps({"conn_type": "generic", "password": CALLBACK_SECRET}),
        },
    )
    try:
        stack.wait_for(
            "the flows' DAGs, parsed and unpaused",
            lambda: (
                stack.sql("SELECT count(*) FROM dag WHERE dag_id LIKE 'hardco__%' AND NOT is_paused")[0][0]
                == 4
            ),
        )
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def admin(stack: AirflowStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token('admin')}"}


def _signed(body: bytes, content_type: str = "application/json") -> dict[str, str]:
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    return {
        "content-type": content_type,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body.decode()),
    }


def _github(body: bytes, content_type: str) -> dict[str, str]:
    return {
        "content-type": content_type,
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-GitHub-Delivery": f"gh-{uuid.uuid4().hex}",
    }


def _inbox(stack: AirflowStack, integration: str, flow: str) -> list[dict[str, Any]]:
    """The messages stored in hardco's inbox of a flow (the asset events' extra), oldest first."""
    rows = stack.sql(
        "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        f"WHERE a.uri = 'b2b://hardco/{integration}/{flow}/inbox' ORDER BY e.id"
    )
    return [
        m
        for (extra,) in rows
        for m in (extra if isinstance(extra, dict) else json.loads(extra))["b2b_webhooks"]
    ]


def _runs(stack: AirflowStack) -> int:
    return stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id = '{SYNC_DAG}'")[0][0]


def _order() -> dict[str, Any]:
    return {
        "order_id": f"ord-{uuid.uuid4().hex[:10]}",
        "amount": 42.5,
        "currency": "EUR",
        "payment_token": "tok_visa",
        "items": [{"sku": "UMB-RED", "quantity": 2}],
    }


def _refused(response: httpx.Response, reason: str, case: str) -> None:
    assert response.status_code == 400, (case, response.status_code, response.text[:500])
    body = response.json()
    assert (body["error"], body["reason"]) == ("bad_json", reason), (case, body)
    assert len(response.content) < 1000, case  # the hostile value is not echoed back


def test_hostile_json_gets_400_with_a_reason_on_every_endpoint_and_valid_messages_still_go_through(
    stack: AirflowStack, admin: dict[str, str]
) -> None:
    runs_before = _runs(stack)
    stored_before = len(_inbox(stack, "billing_webhooks", "invoice_events"))
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        for case, body, reason in HOSTILE:
            _refused(client.post(WEBHOOK, content=body, headers=_signed(body)), reason, f"webhook {case}")
            json_type = {**admin, "content-type": "application/json"}
            _refused(client.post(SYNC, content=body, headers=json_type), reason, f"sync {case}")
            _refused(client.post(EVENTS, content=body, headers=json_type), reason, f"events {case}")
        assert len(_inbox(stack, "billing_webhooks", "invoice_events")) == stored_before
        assert _runs(stack) == runs_before

        valid = json.dumps(
            {"invoice_id": "INV-after", "status": "paid", "amount_cents": 5, "currency": "EUR"}
        )
        headers = _signed(valid.encode())
        assert client.post(WEBHOOK, content=valid, headers=headers).status_code == 202
        call = client.post(SYNC, json=_order(), headers={**admin, "Prefer": "respond-async"})
        assert call.status_code == 202, call.text
        event = {
            "type": "invoice.paid",
            "id": f"evt_{uuid.uuid4().hex[:10]}",
            "occurred_at": "2026-12-03T08:00:00Z",
            "data": {"invoice": "INV-after"},
        }
        published = client.post(EVENTS, json=event, headers=admin)
        assert published.status_code == 202, published.text
    assert published.json()["events"][0]["stored"] == 1
    assert headers["webhook-id"] in [
        m["message_id"] for m in _inbox(stack, "billing_webhooks", "invoice_events")
    ]
    assert event["id"] in [m["message_id"] for m in _inbox(stack, "billing_export", "invoices_out")]
    assert stack.sql(f"SELECT count(*) FROM dag_run WHERE run_id = '{call.json()['run_id']}'") == [(1,)]


def test_forged_webhooks_get_the_same_answer_whether_the_route_exists_or_not(stack: AirflowStack) -> None:
    """Nothing to enumerate customers or flows with: byte-identical answers, whatever the content type."""
    routes = [
        WEBHOOK,  # exists
        GITHUB,  # exists, another signature scheme
        "/b2b/webhooks/nobody/billing_webhooks/invoice_events",  # unknown customer
        "/b2b/webhooks/hardco/billing_webhooks/nothing_here",  # unknown flow
        "/b2b/webhooks/hardco/no_such_integration/invoice_events",  # unknown integration
    ]
    forged = _signed(b'{"invoice_id": "INV-forged"}')
    forged["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    attempts = [
        ({"content-type": "application/json"}, b'{"invoice_id": "INV-forged"}'),  # unsigned
        ({"content-type": "text/plain"}, b"invoice=INV-forged"),  # unsigned, wrong type: was a 415
        ({"content-type": "application/x-www-form-urlencoded"}, b"payload=%7B%7D"),
        (forged, b'{"invoice_id": "INV-forged"}'),  # a bad signature
        ({**forged, "webhook-timestamp": "not-a-time"}, b'{"invoice_id": "INV-forged"}'),  # was a 400
        ({**forged, "webhook-timestamp": "9" * 5000}, b'{"invoice_id": "INV-forged"}'),  # was a 500
    ]
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for headers, body in attempts:
            answers = {
                route: (r.status_code, r.content, {k: v for k, v in r.headers.items() if k != "date"})
                for route in routes
                for r in [client.post(route, content=body, headers=headers)]
            }
            assert len(set(map(repr, answers.values()))) == 1, answers
            status, content, _ = answers[WEBHOOK]
            assert status == 401 and json.loads(content)["error"] == "unauthorized"


def test_a_signed_github_form_delivery_is_stored_as_its_payload(stack: AirflowStack) -> None:
    payload = {"invoice_id": "INV-gh-form", "status": "paid", "amount_cents": 7, "currency": "USD"}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = _github(body, "application/x-www-form-urlencoded")
    response = httpx.post(stack.url + GITHUB, content=body, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    stored = [
        m
        for m in _inbox(stack, "billing_github", "invoice_events")
        if m["message_id"] == headers["X-GitHub-Delivery"]
    ]
    assert [m["payload"] for m in stored] == [payload]
    hostile = urlencode({"payload": '{"amount_cents": NaN}'}).encode()
    refused = httpx.post(
        stack.url + GITHUB, content=hostile, headers=_github(hostile, "application/x-www-form-urlencoded")
    )
    _refused(refused, "non_finite_number", "github form")


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
        ("192.168.0.10", "private"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("0x7f000001", "non-canonical"),
        ("2130706433", "non-canonical"),
        ("0177.0.0.1", "non-canonical"),
        ("127.1", "non-canonical"),
    ],
)
def test_a_callback_url_into_our_network_is_422_and_starts_nothing(
    stack: AirflowStack, admin: dict[str, str], host: str, why: str
) -> None:
    before = _runs(stack)
    url = f"http://{host}:8080/cb?token=t0ps3cret"
    response = httpx.post(stack.url + SYNC, json=_order(), headers={**admin, "Callback-Url": url}, timeout=30)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["field"] == "Callback-Url" and why in error["message"], error
    assert "t0ps3cret" not in response.text
    assert _runs(stack) == before


def test_a_callback_to_a_name_that_resolves_to_loopback_is_refused_when_sent(
    stack: AirflowStack, crm: CrmServer, admin: dict[str, str]
) -> None:
    """``localhost`` passes the check on arrival (a name), but not the check after DNS, when sending."""
    from b2b_integrations.factory.planner import CALLBACK_TASK_ID

    sink = f"cb-{uuid.uuid4().hex[:8]}"
    headers = {
        **admin,
        "Prefer": "respond-async",
        "Callback-Url": f"http://localhost:{crm.port}/inbound/{sink}",
    }
    response = httpx.post(stack.url + SYNC, json=_order(), headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    state = stack.wait_for(
        "the callback task to end",
        lambda: [
            s
            for (s,) in stack.sql(
                f"SELECT state FROM task_instance WHERE dag_id = '{SYNC_DAG}' AND run_id = '{run_id}' "
                f"AND task_id = '{CALLBACK_TASK_ID}'"
            )
            if s in ("success", "failed", "up_for_retry", "upstream_failed")
        ],
        timeout=180,
    )
    assert state == ["failed"]
    assert not crm.admin_get(f"inbound/{sink}")
    logs = "".join(
        p.read_text(errors="replace")
        for p in Path(stack.home, "logs").rglob("*")
        if p.is_file() and run_id in str(p) and CALLBACK_TASK_ID in str(p)
    )
    assert "localhost resolves to a loopback address" in logs, logs[-3000:]
    assert "hardco" in logs
