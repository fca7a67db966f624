"""The sync flow's pieces on real components, without the API server: http_call steps and the callback task in
real DAG runs (``dag.test``, metadata DB) against the demo CRM's payment processor and warehouse; the
runs backend reading those runs back; callback delivery retries against a real HTTP sink."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from b2b_integrations.sources.retries import RetryPolicy
from b2b_integrations.sync.airflow_runs import AirflowRuns
from b2b_integrations.sync.callback import CallbackFailed, callback_message_id, deliver
from b2b_integrations.sync.outcome import CALLBACK_TASK_ID, PUBLIC_ERROR_KEY, RunView
from b2b_integrations.sync.protocol import sync_conf
from crm_server import CrmServer, start_crm_server
from helpers import REPO, shipped_template, write_include

SECRET = "whsec_" + base64.b64encode(b"itest-orders-callback-key-012345").decode()


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    server = start_crm_server(contacts=5, companies=2, invoices=5, access_log=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def fresh_crm(crm: CrmServer) -> None:
    crm.admin("/admin/payments", method="DELETE")
    crm.admin("/admin/faults", method="DELETE")
    crm.admin("stats/reset")


def _order(token: str = "tok_visa") -> dict[str, Any]:
    return {
        "order_id": f"ord-{uuid.uuid4().hex[:8]}",
        "amount": 19.99,
        "currency": "EUR",
        "payment_token": token,
        "items": [{"sku": "UMB-1", "quantity": 1}],
    }


def _dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: CrmServer, template: dict[str, Any]) -> Any:
    """The orders flow for customer ``itest`` (connections to ``crm``), parsed from the DAG factory."""
    from airflow.dag_processing.dagbag import DagBag

    connections = {"payments_api": "itest_pay", "warehouse_api": "itest_wh", "callback_secret": "itest_cb"}
    customer = {"id": "itest", "name": "I Test", "integrations": {"orders": {"connections": connections}}}
    include = write_include(tmp_path / "include", {"orders": template}, {"itest": customer})
    api = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": crm.port, "password": crm.api_key})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_ITEST_PAY", api)
    monkeypatch.setenv("AIRFLOW_CONN_ITEST_WH", api)
    monkeypatch.setenv("AIRFLOW_CONN_ITEST_CB", json.dumps({"conn_type": "generic", "password": SECRET}))
    # The callback receiver is the demo CRM on loopback, which callbacks may only reach when allowed.
    monkeypatch.setenv("B2B_CALLBACK_ALLOWED_NETWORKS", "127.0.0.1/32")
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags["itest__orders__place_order"]


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@pytest.mark.e2e
def test_a_paid_order_runs_both_calls_and_the_backend_reads_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: CrmServer, airflow_db: str
) -> None:
    dag = _dag(tmp_path, monkeypatch, crm, shipped_template("orders"))
    order = _order()
    run = dag.test(run_conf=sync_conf(order, None, None, "admin"))
    assert _states(run) == {
        "charge_payment": "success",
        "create_fulfilment": "success",
        CALLBACK_TASK_ID: "success",
    }
    backend = AirflowRuns()
    view = backend.view(dag.dag_id, run.run_id)
    assert isinstance(view, RunView) and view.state == "success"
    assert view.task_states["create_fulfilment"] == "success"
    answer = backend.xcom(dag.dag_id, run.run_id, "create_fulfilment", "return_value")
    [fulfilment] = crm.admin_get("/admin/payments")["fulfilments"]
    assert answer["result"] == [
        {
            "order_id": order["order_id"],
            "charge_id": fulfilment["charge_id"],
            "amount": 19.99,
            "currency": "EUR",
            "fulfilment_id": fulfilment["id"],
            "fulfilment_status": "created",
            "eta": fulfilment["eta"],
        }
    ]
    assert backend.xcom(dag.dag_id, run.run_id, CALLBACK_TASK_ID, "return_value") == {
        "callback": "not requested"
    }
    assert backend.request_of(dag.dag_id, run.run_id)["body"] == order  # type: ignore[index]
    assert backend.view(dag.dag_id, "no-such-run") is None and backend.request_of(dag.dag_id, "nope") is None


@pytest.mark.e2e
def test_a_declined_card_leaves_the_public_error_and_the_callback_tells_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: CrmServer, airflow_db: str
) -> None:
    dag = _dag(tmp_path, monkeypatch, crm, shipped_template("orders"))
    sink = f"cb-{uuid.uuid4().hex[:8]}"
    run = dag.test(run_conf=sync_conf(_order("tok_expired"), f"{crm.url}/inbound/{sink}", "k-9", "admin"))
    assert _states(run) == {
        "charge_payment": "failed",
        "create_fulfilment": "upstream_failed",
        CALLBACK_TASK_ID: "success",
    }
    backend = AirflowRuns()
    error = backend.xcom(dag.dag_id, run.run_id, "charge_payment", PUBLIC_ERROR_KEY)
    assert error == {"message": "The card has expired.", "code": "expired_card", "http_status": 402}
    assert crm.admin_get("/admin/payments")["fulfilments"] == []
    [delivery] = crm.admin_get(f"inbound/{sink}")
    payload = Webhook(SECRET).verify(delivery["body"], delivery["headers"])
    assert payload["status"] == "failed" and payload["idempotency_key"] == "k-9"
    assert payload["error"] == {"step": "charge_payment", **error}
    assert delivery["headers"]["webhook-id"] == callback_message_id(dag.dag_id, run.run_id)


@pytest.mark.e2e
def test_a_charge_with_an_idempotency_key_is_retried_after_a_500_and_charged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: CrmServer, airflow_db: str
) -> None:
    template = shipped_template("orders")
    template["flows"]["place_order"]["steps"][0]["retry_base_seconds"] = 0
    dag = _dag(tmp_path, monkeypatch, crm, template)
    crm.admin("faults", {"kind": "500", "path_contains": "/api/payments/charges"})
    run = dag.test(run_conf=sync_conf(_order(), None, None, "admin"))
    assert _states(run)["create_fulfilment"] == "success"
    assert len(crm.admin_get("/admin/payments")["charges"]) == 1


@pytest.mark.e2e
def test_without_an_idempotency_key_a_post_is_not_retried_and_the_caller_gets_a_502(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: CrmServer, airflow_db: str
) -> None:
    template = copy.deepcopy(shipped_template("orders"))
    del template["flows"]["place_order"]["steps"][0]["idempotency_header"]
    dag = _dag(tmp_path, monkeypatch, crm, template)
    crm.admin("faults", {"kind": "500", "count": 1, "path_contains": "/api/payments/charges"})
    run = dag.test(run_conf=sync_conf(_order(), None, None, "admin"))
    assert _states(run)["charge_payment"] == "failed"
    error = AirflowRuns().xcom(dag.dag_id, run.run_id, "charge_payment", PUBLIC_ERROR_KEY)
    assert error == {"message": "the third-party API answered HTTP 500", "http_status": 502}
    assert crm.admin_get("/admin/payments")["charges"] == []
    assert crm.admin_get("stats")["by_status"] == {"500": 1}  # one try only


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=10).status_code


def test_a_callback_is_retried_until_accepted_each_try_signed_with_the_same_id(crm: CrmServer) -> None:
    sink = f"cb-{uuid.uuid4().hex[:8]}"
    crm.admin(f"inbound/{sink}/responses", {"statuses": [500, 503]})
    body = json.dumps({"status": "succeeded", "run_id": "r1"}).encode()
    tries = deliver(f"{crm.url}/inbound/{sink}", body, SECRET, "msg_1", RetryPolicy(3, 0.0), _post)
    assert tries == 3
    deliveries = crm.admin_get(f"inbound/{sink}")
    assert [d["status"] for d in deliveries] == [500, 503, 202]
    for delivery in deliveries:
        assert Webhook(SECRET).verify(delivery["body"], delivery["headers"]) == {
            "status": "succeeded",
            "run_id": "r1",
        }
        assert delivery["headers"]["webhook-id"] == "msg_1"


def test_a_callback_that_never_gets_through_fails_naming_only_the_host(crm: CrmServer) -> None:
    sink = f"cb-{uuid.uuid4().hex[:8]}"
    crm.admin(f"inbound/{sink}/responses", {"statuses": [500, 500]})
    url = f"{crm.url}/inbound/{sink}?token=s3cr3t-token"
    with pytest.raises(CallbackFailed) as caught:
        deliver(url, b"{}", SECRET, "msg_2", RetryPolicy(2, 0.0), _post)
    assert "127.0.0.1" in str(caught.value) and "s3cr3t" not in str(caught.value)
    assert "HTTP 500" in str(caught.value)
    dead = "http://127.0.0.1:9/cb"  # discard port: nothing listens
    with pytest.raises(CallbackFailed, match="ConnectError"):
        deliver(dead, b"{}", SECRET, "msg_3", RetryPolicy(2, 0.0), _post)


@pytest.mark.e2e
def test_http_call_is_general_a_lookup_per_record_then_one_batch_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: CrmServer, airflow_db: str
) -> None:
    """Outside sync flows: records from a transform, a GET per record, then one POST with every record."""
    from airflow.dag_processing.dagbag import DagBag

    sink = f"batch-{uuid.uuid4().hex[:8]}"
    steps = [
        {"id": "make", "kind": "transform", "callable": "sample_transforms.rows", "options": {"count": 3, "tag": "t"}},
        {"id": "lookup", "kind": "http_call", "connection": "crm", "method": "GET", "endpoint": "/api/contacts/{id}",
         "auth": {"type": "api_key"}, "response_fields": {"email": "email"}, "keep_fields": ["id"]},
        {"id": "push", "kind": "http_call", "connection": "crm", "per": "run", "endpoint": f"/inbound/{sink}",
         "batch_key": "records", "body": {"contact_id": "id", "contact.email": "email"},
         "body_constants": {"source": "b2b"}, "response_fields": {"received": "received"}},
    ]  # fmt: skip
    template = {
        "name": "calls",
        "connections": {"crm": {"type": "http"}},
        "flows": {"run": {"trigger": {"type": "manual"}, "steps": steps}},
    }
    customer = {"id": "gen", "name": "Gen", "integrations": {"calls": {"connections": {"crm": "gen_crm"}}}}
    include = write_include(tmp_path / "include", {"calls": template}, {"gen": customer})
    api = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": crm.port, "password": crm.api_key})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_TRANSFORM_PREFIXES", "sample_transforms")
    monkeypatch.setenv("AIRFLOW_CONN_GEN_CRM", api)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["gen__calls__run"]
    run = dag.test()
    assert _states(run) == {"make": "success", "lookup": "success", "push": "success"}
    emails = [crm.api("GET", f"/api/contacts/{i}").json()["email"] for i in (1, 2, 3)]
    [delivery] = crm.admin_get(f"inbound/{sink}")
    assert delivery["json"] == {
        "records": [
            {"contact_id": i, "contact": {"email": e}, "source": "b2b"}
            for i, e in zip((1, 2, 3), emails, strict=True)
        ]
    }
    backend = AirflowRuns()
    lookup = backend.xcom(dag.dag_id, run.run_id, "lookup", "return_value")
    assert lookup["calls"] == 3 and lookup["result"] == [
        {"id": i, "email": e} for i, e in zip((1, 2, 3), emails, strict=True)
    ]
    push = backend.xcom(dag.dag_id, run.run_id, "push", "return_value")
    assert push["calls"] == 1 and push["result"] == [{"received": True}]
