"""Alert monitors on a running Airflow: the monitors DAG (include/app.yaml) asks the API server to evaluate
every minute-ish; a flow made late and flows made to fail repeatedly raise their alerts at a real HTTP
receiver (the SaaS backend's webhook, signed with Standard Webhooks; a Slack incoming webhook), each once,
and recovered once after a success; automatic deactivation pauses the DAGs when configured, never when not.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from airflow_stack import AIRFLOW, AirflowStack, start_airflow_stack
from crm_server import CrmServer
from helpers import REPO, write_include
from http_sink import HttpSink, body_bytes, start_http_sink

SMS_SID = "AC" + "d3m0" * 8  # the SMS stand-in's account
pytestmark = pytest.mark.airflow_stack

API = "/b2b/api/v1/customers"
ADMIN_PASSWORD = "monitors-admin-pw"
SECRET = "whsec_" + base64.b64encode(b"monitors-signing-secret-0123456789").decode()
SAAS_PATH = "/saas/monitors"

PROBE = {
    "name": "probe",
    "config": {
        "release_file": {"type": "string", "default": "/nonexistent"},
        "ok_file": {"type": "string", "default": "/nonexistent"},
        "overdue": {"type": "string", "default": "20s"},
    },
    "defaults": {"retries": 0},
    # A reference in the template's block, resolved per customer.
    "monitors": {"overdue_after": "${config.overdue}"},
    "flows": {
        "hold": {
            "trigger": {"type": "schedule", "schedule": "1h"},
            "steps": [
                {
                    "id": "wait",
                    "kind": "transform",
                    "callable": "monitor_transforms.hold",
                    "options": {"release_file": "${config.release_file}"},
                }
            ],  # fmt: skip
        },
        "flip": {
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "id": "call",
                    "kind": "transform",
                    "callable": "monitor_transforms.flip",
                    "options": {"ok_file": "${config.ok_file}"},
                }
            ],  # fmt: skip
        },
    },
}


def _customer(
    cid: str, files: Path, monitors: dict[str, Any], flows: dict[str, Any], active: bool = True, **extra: Any
) -> dict[str, Any]:
    config = {"release_file": str(files / f"{cid}_release"), "ok_file": str(files / f"{cid}_ok")}
    entry = {"config": config, "monitors": monitors, "flows": flows, "active": active}
    return {"id": cid, "name": cid.title(), "integrations": {"probe": entry}, **extra}


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    found = start_http_sink()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("monitors_files")


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, sink: HttpSink, crm: CrmServer, files: Path
) -> Iterator[AirflowStack]:
    customers = {
        # Late: its hourly run waits for a file, so it cannot succeed within 20 s of being due. Inactive
        # until the test activates it: its run must not start before the API server answers tasks.
        "lateco": _customer("lateco", files, {"max_duration": "25s"}, {"flip": {"enabled": False}}, active=False,
                            alerts={"slack": "lateco_slack", "sms": ["+4512345678"], "sms_connection": "lateco_sms",
                                    "sms_from": "+4598765432"}),
        # Fails repeatedly; no deactivation configured: warned once, never paused.
        "flakyco": _customer("flakyco", files, {"warn_after_failures": 2}, {"hold": {"enabled": False}}),
        # Fails repeatedly with deactivation after 3: warned and announced at 2, paused at 3.
        "deadco": _customer("deadco", files, {"warn_after_failures": 2, "deactivate_after_failures": 3},
                            {"hold": {"enabled": False}}),
    }  # fmt: skip
    include = write_include(tmp_path_factory.mktemp("monitors") / "include", {"probe": PROBE}, customers)
    (include / "app.yaml").write_text(
        "monitors:\n  api_connection: mon_b2b_api\n  schedule: 20s\n  webhook_connection: mon_saas\n"
        f"  webhook_endpoint: {SAAS_PATH}\n"
    )
    passwords = include.parent / "passwords.json"
    passwords.write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    saas = {"conn_type": "http", "host": sink.url, "password": SECRET}
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW_CONN_MON_SAAS": json.dumps(saas),
            "AIRFLOW_CONN_LATECO_SLACK": json.dumps(
                {"conn_type": "slackwebhook", "password": sink.webhook_url}
            ),
            # The demo CRM's Twilio-compatible stand-in (include/demo/crm_app.py).
            "AIRFLOW_CONN_LATECO_SMS": json.dumps(
                {
                    "conn_type": "http",
                    "host": f"{crm.url}/sms",
                    "login": SMS_SID,
                    "password": "demo-sms-token",
                }
            ),
            "B2B_TRANSFORM_PREFIXES": "b2b_integrations.transforms,monitor_transforms",
            "PYTHONPATH": str(REPO / "tests"),
        },
    )
    # The API server's address is known only now: the monitors DAG's connection to it goes into the DB.
    api = {"conn_type": "http", "host": stack.url, "login": "admin", "password": ADMIN_PASSWORD}
    added = subprocess.run(
        [AIRFLOW, "connections", "add", "mon_b2b_api", "--conn-json", json.dumps(api)],
        env=stack.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr[-2000:]
    try:
        stack.wait_for(
            "the DAGs parsed",
            lambda: stack.sql(
                "SELECT count(*) FROM dag WHERE NOT is_stale AND (dag_id LIKE '%\\_\\_probe\\_\\_%' OR dag_id = 'b2b_app__monitors')"
            )[0][0] == 4,
            timeout=300,
        )  # fmt: skip
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def admin(stack: AirflowStack) -> Iterator[httpx.Client]:
    token = httpx.post(
        f"{stack.url}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30
    )
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as client:
        yield client


def _alerts(sink: HttpSink) -> list[tuple[str, str, str, str]]:
    """(customer, flow, kind, episode) of every webhook the SaaS backend got, each checked for its signature."""
    found = []
    for request in sink.requests("upload"):
        if request["path"] != SAAS_PATH:
            continue
        body = body_bytes(request)
        payload = Webhook(SECRET).verify(body, request["headers"])  # raises on a bad signature
        data = payload["data"]
        assert payload["type"] == f"integration.monitor.{data['kind']}"
        assert request["headers"]["webhook-id"] == data["id"]
        found.append((data["customer"], data["flow"], data["kind"], data["episode"]))
    return found


def _kinds(sink: HttpSink, customer: str) -> Counter[str]:
    return Counter(kind for c, _, kind, _ in _alerts(sink) if c == customer)


def _run_state(stack: AirflowStack, dag_id: str, run_id: str) -> str | None:
    found = stack.sql(f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'")
    return found[0][0] if found else None


def _run_flip(stack: AirflowStack, admin: httpx.Client, customer: str) -> str:
    answer = admin.post(f"{API}/{customer}/instances/probe/flows/flip/runs", json={})
    assert answer.status_code == 201, answer.text
    run_id = str(answer.json()["run_id"])
    return stack.wait_for(
        f"{customer} flip {run_id} finished",
        lambda: (
            (state := _run_state(stack, f"{customer}__probe__flip", run_id)) in ("success", "failed")
            and state
        ),
        timeout=300,
    )


def _evaluations(stack: AirflowStack) -> int:
    return stack.sql("SELECT count(*) FROM dag_run WHERE dag_id = 'b2b_app__monitors' AND state = 'success'")[
        0
    ][0]


def _two_more_evaluations(stack: AirflowStack) -> None:
    """Wait until the monitors DAG evaluated twice more: repeats, if any, would have been sent by then."""
    start = _evaluations(stack)
    stack.wait_for("two more evaluations", lambda: _evaluations(stack) >= start + 2, timeout=300)


def test_late_and_failing_flows_alert_once_and_recover_once(
    stack: AirflowStack, admin: httpx.Client, sink: HttpSink, crm: CrmServer, files: Path
) -> None:
    activated = admin.post(f"{API}/lateco/instances/probe/activate")
    assert activated.status_code == 200, activated.text
    # Failing flows: each run fails (retries 0) until the test creates its ok file.
    assert [_run_flip(stack, admin, "flakyco") for _ in range(3)] == ["failed"] * 3
    assert [_run_flip(stack, admin, "deadco") for _ in range(3)] == ["failed"] * 3

    stack.wait_for("the late flow's overdue and duration alerts",
                   lambda: {"overdue", "duration_exceeded"} <= set(_kinds(sink, "lateco")), timeout=300)  # fmt: skip
    stack.wait_for("flakyco's failure warning", lambda: _kinds(sink, "flakyco")["failures"] == 1, timeout=300)
    stack.wait_for("deadco's deactivation", lambda: _kinds(sink, "deadco")["deactivated"] == 1, timeout=300)

    # Deactivation: the instance's DAGs paused, recorded in its history as the monitors' change.
    assert stack.sql("SELECT is_paused FROM dag WHERE dag_id = 'deadco__probe__flip'") == [(True,)]
    versions = admin.get(f"{API}/deadco/instances/probe/versions")
    assert versions.status_code == 200, versions.text
    last = versions.json()["versions"][-1]
    assert (last["by"], last["action"]) == ("monitors", "deactivate")
    # Never without the setting: three failures in a row and still running.
    assert stack.sql("SELECT is_paused FROM dag WHERE dag_id = 'flakyco__probe__flip'") == [(False,)]

    # Both recover: the late run is released, the failing flow is told to succeed.
    (files / "lateco_release").touch()
    (files / "flakyco_ok").touch()
    assert _run_flip(stack, admin, "flakyco") == "success"
    stack.wait_for("lateco and flakyco recovered",
                   lambda: _kinds(sink, "lateco")["recovered"] == 1 and _kinds(sink, "flakyco")["recovered"] == 1,
                   timeout=300)  # fmt: skip
    _two_more_evaluations(stack)

    alerts = _alerts(sink)
    repeated = [key for key, count in Counter(alerts).items() if count > 1]
    assert repeated == [], f"sent more than once: {repeated}"
    assert _kinds(sink, "lateco") == Counter({"overdue": 1, "duration_exceeded": 1, "recovered": 1})
    assert _kinds(sink, "flakyco") == Counter({"failures": 1, "recovered": 1})
    assert _kinds(sink, "deadco") == Counter({"failures": 1, "deactivation_warning": 1, "deactivated": 1})
    # The customer's Slack target got lateco's three alerts, once each; nobody else's.
    slack = [r["json"]["text"] for r in sink.requests("webhook") if r.get("status") == 200]
    assert sorted(text.split(":")[0] for text in slack) == ["Overdue", "Recovered", "Running too long"], slack
    assert all("lateco" in text for text in slack)
    # And its SMS target the same three, as short texts to its number.
    texts = httpx.get(f"{crm.url}/admin/sms", timeout=30).json()
    assert sorted(m["body"].split(":")[1].strip() for m in texts) == [
        "Overdue",
        "Recovered",
        "Running too long",
    ], texts
    assert all(m["to"] == "+4512345678" and "lateco" in m["body"] and len(m["body"]) <= 306 for m in texts)


def test_evaluate_endpoint_refuses_customer_tokens_and_anonymous_callers(
    stack: AirflowStack, admin: httpx.Client
) -> None:
    assert httpx.post(f"{stack.url}/b2b/api/v1/monitors/evaluate", timeout=30).status_code == 401
    token = admin.post(f"{API}/flakyco/tokens", json={"scopes": ["read", "write"]})
    assert token.status_code == 201, token.text
    answer = httpx.post(f"{stack.url}/b2b/api/v1/monitors/evaluate", timeout=30,
                        headers={"Authorization": f"Bearer {token.json()['token']}"})  # fmt: skip
    assert answer.status_code == 403, answer.text
    assert "raised" not in answer.text


def test_secrets_stay_out_of_the_task_log(stack: AirflowStack) -> None:
    logs = stack.home / "logs"
    texts = [
        p.read_text(errors="replace")
        for p in logs.rglob("*")
        if p.is_file() and "b2b_app__monitors" in str(p)
    ]
    assert texts, "no monitors task log"
    assert not any(SECRET in t or ADMIN_PASSWORD in t or "hookSecretPath77" in t for t in texts)
