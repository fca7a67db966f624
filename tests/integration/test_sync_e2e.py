"""Synchronous flows end to end on a real Airflow (API server, scheduler, dag-processor) and the demo CRM's
payment processor and warehouse: POST /b2b/sync/... -> a DAG run with the body as conf -> the answer."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from airflow_stack import AirflowStack, start_airflow_stack
from crm_server import CrmServer, start_crm_server
from helpers import shipped_template, write_include

pytestmark = pytest.mark.airflow_stack

CALLBACK_SECRET = "whsec_" + base64.b64encode(b"e2e-orders-callback-key-01234567").decode()
DAG_ID = "shopco__orders__place_order"
URL = "/b2b/sync/shopco/orders/place_order"
WAIT = {"Prefer": "wait=90"}  # the machine may be busy: a success test must not turn into a 202


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    server = start_crm_server(contacts=5, companies=2, invoices=5, access_log=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, crm: CrmServer) -> Iterator[AirflowStack]:
    connections = {"payments_api": "shopco_pay", "warehouse_api": "shopco_wh", "callback_secret": "shopco_cb"}
    include = write_include(
        tmp_path_factory.mktemp("sync") / "include",
        {"orders": shipped_template("orders")},
        {
            "shopco": {
                "id": "shopco",
                "name": "Shop Co",
                "integrations": {"orders": {"connections": connections}},
            }
        },
    )
    api = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": crm.port, "password": crm.api_key})
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_SHOPCO_PAY": api,
            "AIRFLOW_CONN_SHOPCO_WH": api,
            "AIRFLOW_CONN_SHOPCO_CB": json.dumps({"conn_type": "generic", "password": CALLBACK_SECRET}),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            # The callback receiver is the demo CRM on loopback, which the address policy refuses unless
            # the deployment allows it (tests/integration/test_inbound_hardening_e2e.py runs without this).
            "B2B_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32",
        },
    )
    try:
        stack.wait_for(
            "the sync DAG, parsed and unpaused",
            lambda: stack.sql(f"SELECT 1 FROM dag WHERE dag_id = '{DAG_ID}' AND NOT is_paused"),
        )
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def admin(stack: AirflowStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token('admin')}"}


def _order(token: str = "tok_visa", amount: float = 42.5, order_id: str | None = None) -> dict[str, Any]:
    return {
        "order_id": order_id or f"ord-{uuid.uuid4().hex[:10]}",
        "amount": amount,
        "currency": "EUR",
        "payment_token": token,
        "items": [{"sku": "UMB-RED", "quantity": 2}],
        "ship_to": {"name": "Alice", "city": "Raccoon City"},
    }


def _post(stack: AirflowStack, body: Any, headers: dict[str, str], timeout: float = 120) -> httpx.Response:
    return httpx.post(stack.url + URL, json=body, headers=headers, timeout=timeout)


def _runs(stack: AirflowStack) -> int:
    return stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id = '{DAG_ID}'")[0][0]


def _for_order(crm: CrmServer, kind: str, order_id: str) -> list[dict[str, Any]]:
    field = "reference" if kind == "charges" else "order_id"
    return [entry for entry in crm.admin_get("/admin/payments")[kind] if entry[field] == order_id]


def test_an_order_is_charged_and_fulfilled_and_the_answer_carries_the_result(
    stack: AirflowStack, crm: CrmServer, admin: dict[str, str]
) -> None:
    order = _order()
    response = _post(stack, order, {**admin, **WAIT})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "succeeded"
    result = answer["result"]
    [charge] = _for_order(crm, "charges", order["order_id"])
    [fulfilment] = _for_order(crm, "fulfilments", order["order_id"])
    assert result == {
        "order_id": order["order_id"],
        "charge_id": charge["id"],
        "amount": 42.5,
        "currency": "EUR",
        "fulfilment_id": fulfilment["id"],
        "fulfilment_status": "created",
        "eta": fulfilment["eta"],
    }
    assert fulfilment["charge_id"] == charge["id"] and fulfilment["items"] == order["items"]
    assert (
        stack.sql(f"SELECT conf FROM dag_run WHERE run_id = '{answer['run_id']}'")[0][0]["b2b-sync"]["body"]
        == order
    )


def test_a_declined_card_answers_402_with_the_processors_reason_and_ships_nothing(
    stack: AirflowStack, crm: CrmServer, admin: dict[str, str]
) -> None:
    order = _order(token="tok_insufficient_funds")
    response = _post(stack, order, {**admin, **WAIT})
    assert response.status_code == 402, response.text
    answer = response.json()
    assert answer["status"] == "failed"
    assert answer["error"] == {
        "step": "charge_payment",
        "message": "The card has insufficient funds.",
        "code": "insufficient_funds",
        "http_status": 402,
    }
    assert "Traceback" not in response.text and crm.api_key not in response.text
    assert _for_order(crm, "fulfilments", order["order_id"]) == []
    run_id = answer["run_id"]
    # The answer came as soon as the charge failed; the scheduler then settles the rest of the run.
    stack.wait_for(
        "the run to be marked failed",
        lambda: stack.sql(f"SELECT state FROM dag_run WHERE run_id = '{run_id}'") == [("failed",)],
    )
    states = dict(stack.sql(f"SELECT task_id, state FROM task_instance WHERE run_id = '{run_id}'"))
    assert states["charge_payment"] == "failed" and states["create_fulfilment"] == "upstream_failed"


def test_a_slow_flow_answers_202_and_later_posts_the_signed_result_to_the_callback(
    stack: AirflowStack, crm: CrmServer, admin: dict[str, str]
) -> None:
    sink = f"cb-{uuid.uuid4().hex[:8]}"
    crm.admin("faults", {"kind": "timeout", "delay_s": 6, "path_contains": "/api/payments/charges"})
    order = _order()
    headers = {**admin, "Prefer": "wait=1", "Callback-Url": f"{crm.url}/inbound/{sink}"}
    response = _post(stack, order, headers)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] in ("queued", "running")
    assert response.headers["location"] == accepted["status_url"]
    assert accepted["status_url"].startswith(f"{stack.url}{URL}/runs/")

    status = httpx.get(accepted["status_url"], headers={**admin, **WAIT}, timeout=120)
    assert status.status_code == 200 and status.json()["status"] == "succeeded", status.text
    deliveries = stack.wait_for("the callback", lambda: crm.admin_get(f"inbound/{sink}"), timeout=120)
    assert len(deliveries) == 1
    delivery = deliveries[0]
    # Verified with the standardwebhooks library itself (it raises on a bad or stale signature).
    payload = Webhook(CALLBACK_SECRET).verify(delivery["body"], delivery["headers"])
    assert payload["status"] == "succeeded" and payload["run_id"] == accepted["run_id"]
    assert payload["result"] == status.json()["result"]
    assert payload["result"]["order_id"] == order["order_id"]
    assert (payload["customer"], payload["integration"], payload["flow"]) == (
        "shopco",
        "orders",
        "place_order",
    )


def test_the_same_idempotency_key_twice_starts_one_run_and_charges_once(
    stack: AirflowStack, crm: CrmServer, admin: dict[str, str]
) -> None:
    order = _order()
    headers = {**admin, **WAIT, "Idempotency-Key": f"order-{order['order_id']}"}
    before = _runs(stack)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda _: _post(stack, order, headers), range(2))
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert first.json() == second.json()
    assert _runs(stack) == before + 1
    assert len(_for_order(crm, "charges", order["order_id"])) == 1
    again = _post(stack, order, headers)
    assert again.status_code == 200 and again.json() == first.json()
    other_body = _post(stack, {**order, "amount": 1.0}, headers)
    assert other_body.status_code == 409 and other_body.json()["error"] == "idempotency_key_reused"
    assert _runs(stack) == before + 1


def test_without_a_valid_token_or_permission_nothing_starts(
    stack: AirflowStack, admin: dict[str, str]
) -> None:
    before = _runs(stack)
    assert _post(stack, _order(), {}).status_code == 401
    assert _post(stack, _order(), {"Authorization": "Bearer not-a-jwt"}).status_code == 401
    viewer = {"Authorization": f"Bearer {stack.token('viewer')}"}
    refused = _post(stack, _order(), viewer)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert _runs(stack) == before
    # A viewer may read a run's status, though: one the admin starts here (without waiting for it), so the
    # test needs no run left by another test.
    started = _post(stack, _order(), {**admin, "Prefer": "respond-async"})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    status = httpx.get(f"{stack.url}{URL}/runs/{run_id}", headers=viewer, timeout=30)
    assert status.status_code == 200 and status.json()["run_id"] == run_id


def test_a_bad_body_is_422_with_every_field_error_and_starts_nothing(
    stack: AirflowStack, admin: dict[str, str]
) -> None:
    before = _runs(stack)
    bad = {**_order(amount=-3), "currency": "euro", "gift": True}
    del bad["items"]
    response = _post(stack, bad, admin)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert {e["field"] for e in errors} == {"(body)", "amount", "currency"}
    assert any("items" in e["message"] for e in errors) and any("gift" in e["message"] for e in errors)
    assert _post(stack, [_order()], admin).status_code == 422
    assert _post(stack, _order(), {**admin, "Callback-Url": "ftp://example.com/x"}).status_code == 422
    unknown = httpx.post(stack.url + "/b2b/sync/shopco/orders/nope", json=_order(), headers=admin, timeout=30)
    assert unknown.status_code == 404
    as_text = httpx.post(stack.url + URL, content=b"order", headers={**admin, "content-type": "text/plain"})
    assert as_text.status_code == 415
    not_json = httpx.post(
        stack.url + URL, content=b"{order", headers={**admin, "content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert _runs(stack) == before
    no_run = httpx.get(f"{stack.url}{URL}/runs/sync__nope", headers=admin, timeout=30)
    assert no_run.status_code == 404


def test_a_paused_flow_answers_503_and_queues_nothing(stack: AirflowStack, admin: dict[str, str]) -> None:
    def pause(paused: bool) -> None:
        response = httpx.patch(
            f"{stack.url}/api/v2/dags/{DAG_ID}", json={"is_paused": paused}, headers=admin, timeout=30
        )
        response.raise_for_status()

    before = _runs(stack)
    pause(True)
    try:
        response = _post(stack, _order(), admin)
    finally:
        pause(False)
    assert response.status_code == 503 and response.headers["retry-after"] == "30"
    assert "paused" in response.json()["detail"]
    assert _runs(stack) == before
    assert _runs(stack) == before
