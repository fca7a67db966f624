"""Status, run history and troubleshooting actions of the instances API on a real Airflow (API server,
scheduler, dag-processor on PostgreSQL), through HTTP as an embedding SaaS product calls them.

One stack for the module. Customer ``obsco`` has four instances, each there for one health word:
``obs`` (a flow that loads, one that fails with a credential in its error, one never run, one for run-now
overrides: failing), ``clean`` (one succeeded run: healthy), ``quiet`` (never run; paused; config problem)
and ``inbox`` (a webhook flow with a quarantined message: degraded). ``otherco`` is the other tenant.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from airflow_stack import AirflowStack, start_airflow_stack
from browser import browser, browser_page, log_in_to_airflow, screenshot  # noqa: F401
from crm_server import CrmServer
from helpers import PG, REPO, write_include
from helpers import pg_rows as rows

pytestmark = pytest.mark.airflow_stack

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
EXTRA_SECRET = "hint-" + uuid.uuid4().hex[:12]
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"observe-billing-signing-key-012").decode()
API = "/b2b/api/v1/customers"
OBS = f"{API}/obsco/instances/obs"
SINK = f"obs_{uuid.uuid4().hex[:8]}"


def _load(table: str) -> dict[str, Any]:
    return {
        "id": "load",
        "kind": "load",
        "connection": "db",
        "table": table,
        "key": ["id"],
        "create_table": True,
        "columns": {"id": "INTEGER", "tag": "TEXT", "score": "REAL"},
    }


def _make(count: Any = "${config.row_count}", tag: str = "${customer.id}") -> dict[str, Any]:
    return {
        "id": "make",
        "kind": "transform",
        "callable": "sample_transforms.rows",
        "options": {"count": count, "tag": tag},
    }


TEMPLATES: dict[str, dict[str, Any]] = {
    "obs": {
        "name": "obs",
        "defaults": {"retries": 0},
        "config": {"row_count": {"type": "integer", "default": 2, "minimum": 1, "maximum": 50}},
        "connections": {"db": {"type": "postgres"}, "api": {"type": "generic"}},
        "flows": {
            "good": {"trigger": {"type": "manual"}, "steps": [_make(), _load("obs_good")]},
            "tune": {"trigger": {"type": "manual"}, "steps": [_make(), _load("obs_tune")]},
            "idle": {"trigger": {"type": "manual"}, "steps": [_make(), _load("obs_idle")]},
            "bad": {
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "boom",
                        "kind": "transform",
                        "callable": "observe_transforms.leaky",
                        "options": {"conn_id": "${connections.api}"},
                    }
                ],
            },
        },
    },
    "clean": {
        "name": "clean",
        "defaults": {"retries": 0},
        "connections": {"db": {"type": "postgres"}},
        "flows": {
            "once": {
                "trigger": {"type": "schedule", "schedule": "@daily"},
                "steps": [_make(3), _load("clean_once")],
            }
        },
    },
    "quiet": {
        "name": "quiet",
        "config": {"size": {"type": "integer", "default": 1}},
        "connections": {"db": {"type": "postgres"}},
        "flows": {"later": {"trigger": {"type": "manual"}, "steps": [_make("${config.size}"), _load("q")]}},
    },
    # A string config value that lands in a templated option (the transform's options).
    "echo": {
        "name": "echo",
        "defaults": {"retries": 0},
        "config": {"note": {"type": "string", "default": "plain"}},
        "connections": {"db": {"type": "postgres"}},
        "flows": {
            "say": {"trigger": {"type": "manual"}, "steps": [_make(2, "${config.note}"), _load("obs_echo")]}
        },
    },
    "inbox": {
        "name": "inbox",
        "connections": {"webhook_secret": {"type": "generic"}, "db": {"type": "postgres"}},
        "flows": {
            "events": {
                "trigger": {
                    "type": "webhook",
                    "signature": "standard_webhooks",
                    "secret_connection": "webhook_secret",
                },
                "steps": [
                    {
                        "id": "normalise",
                        "kind": "transform",
                        "callable": "b2b_integrations.transforms.common.select_columns",
                        "options": {"rename": {"invoice_id": "id"}, "columns": ["id", "status"]},
                    },
                    {
                        "id": "store",
                        "kind": "load",
                        "connection": "db",
                        "table": "inbox_events",
                        "key": ["id"],
                        "create_table": True,
                        "columns": {"id": "VARCHAR(40)", "status": "VARCHAR(20)"},
                    },
                ],
            }
        },
    },
    "outbound": {
        "name": "outbound",
        "connections": {"partner_hooks": {"type": "http"}, "db": {"type": "postgres"}},
        "flows": {
            "push": {
                "trigger": {"type": "app_event", "events": ["contact.updated"]},
                "steps": [
                    {
                        "id": "send",
                        "kind": "deliver_events",
                        "db_connection": "db",
                        "target": {
                            "type": "webhook",
                            "connection": "partner_hooks",
                            "endpoint": f"/inbound/{SINK}",
                        },
                        "retry_attempts": 3,
                        "retry_base_seconds": 0,
                        "retry_max_seconds": 0,
                    }
                ],
            }
        },
    },
}
OBSCO = {
    "id": "obsco",
    "name": "Obs Co",
    "integrations": {
        "obs": {"connections": {"db": "obsco_db", "api": "obsco_api"}},
        "clean": {"connections": {"db": "obsco_db"}},
        "quiet": {"connections": {"db": "obsco_db"}},
        "echo": {"connections": {"db": "obsco_db"}},
        "inbox": {"connections": {"db": "obsco_db", "webhook_secret": "obsco_hooks"}},
        "outbound": {"connections": {"db": "obsco_db", "partner_hooks": "obsco_partner"}},
    },
}
OTHERCO = {
    "id": "otherco",
    "name": "Other Co",
    "integrations": {"clean": {"connections": {"db": "obsco_db"}}},
}


def _partner_conn(crm: CrmServer) -> str:
    return json.dumps(
        {
            "conn_type": "http",
            "host": crm.host,
            "port": crm.port,
            "schema": "http",
            "password": WEBHOOK_SECRET,
        }
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_db: str, crm: CrmServer) -> Iterator[AirflowStack]:
    include = write_include(
        tmp_path_factory.mktemp("observe") / "include", TEMPLATES, {"obsco": OBSCO, "otherco": OTHERCO}
    )
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_OBSCO_DB": f"{PG}/{pg_db}",
            "AIRFLOW_CONN_OBSCO_API": json.dumps(
                {"conn_type": "generic", "password": PASSWORD, "extra": {"region_hint": EXTRA_SECRET}}
            ),
            "AIRFLOW_CONN_OBSCO_HOOKS": json.dumps({"conn_type": "generic", "password": WEBHOOK_SECRET}),
            "AIRFLOW_CONN_OBSCO_PARTNER": _partner_conn(crm),
            "B2B_TRANSFORM_PREFIXES": "b2b_integrations.transforms,sample_transforms,observe_transforms",
            "PYTHONPATH": str(REPO / "tests"),
        },
    )
    try:
        stack.wait_for(
            "the DAGs parsed",
            lambda: (
                stack.sql("SELECT count(*) FROM dag WHERE dag_id LIKE 'obsco__%' AND NOT is_stale")[0][0] == 9
            ),
            timeout=300,
        )
        stack.include = include  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def admin(stack: AirflowStack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack.token()}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as client:
        yield client


def _customer_client(
    stack: AirflowStack, admin: httpx.Client, customer: str, scopes: list[str]
) -> httpx.Client:
    answer = admin.post(f"{API}/{customer}/tokens", json={"scopes": scopes})
    assert answer.status_code == 201, answer.text
    return httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {answer.json()['token']}"}, timeout=60
    )


def _run_state(stack: AirflowStack, dag_id: str, run_id: str) -> str | None:
    found = stack.sql(f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'")
    return found[0][0] if found else None


def _finished(stack: AirflowStack, dag_id: str, run_id: str, timeout: float = 300) -> str:
    return stack.wait_for(
        f"{dag_id} {run_id} finished",
        lambda: (state := _run_state(stack, dag_id, run_id)) in ("success", "failed") and state,
        timeout=timeout,
    )


def _run_now(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> str:
    answer = client.post(path, json=body or {})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["run_id"])


@pytest.fixture(scope="module")
def ran(stack: AirflowStack, admin: httpx.Client) -> dict[str, list[str]]:
    """Runs made once for the module: obs/good once, obs/bad twice, clean/once once, all finished."""
    started = {
        "obsco__obs__good": [_run_now(admin, f"{OBS}/flows/good/runs")],
        "obsco__obs__bad": [_run_now(admin, f"{OBS}/flows/bad/runs")],
        "obsco__clean__once": [_run_now(admin, f"{API}/obsco/instances/clean/flows/once/runs")],
    }
    # A second failed run, created after the first (newest first: its run_after is later).
    started["obsco__obs__bad"].insert(0, _run_now(admin, f"{OBS}/flows/bad/runs"))
    for dag_id, run_ids in started.items():
        for run_id in run_ids:
            _finished(stack, dag_id, run_id)
    return started


def _send_webhook(stack: AirflowStack, payload: dict[str, Any]) -> str:
    body = json.dumps(payload)
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign(msg_id, now, body),
    }
    answer = httpx.post(
        f"{stack.url}/b2b/webhooks/obsco/inbox/events", content=body, headers=headers, timeout=30
    )
    assert answer.status_code == 202, answer.text
    return msg_id


def _status(client: httpx.Client, integration: str) -> dict[str, Any]:
    answer = client.get(f"{API}/obsco/instances/{integration}/status")
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def inbox(stack: AirflowStack, admin: httpx.Client, pg_db: str) -> dict[str, str]:
    """One invoice loaded and one message quarantined (no key) in the ``inbox`` instance."""
    good = _send_webhook(stack, {"invoice_id": "INV-1", "status": "paid"})
    keyless = _send_webhook(stack, {"invoice_id": None, "status": "paid"})
    # The message entry is written before the load step ends; the refused record's count comes from the
    # step's result, stored when it ends: wait for both, or a test that reads the counts at once races it.
    stack.wait_for(
        "INV-1 loaded, the keyless message quarantined and the load step's result stored",
        lambda: (
            rows(pg_db, "SELECT to_regclass('inbox_events')") != [(None,)]
            and rows(pg_db, "SELECT id FROM inbox_events") == [("INV-1",)]
            and (status := _status(admin, "inbox"))["counts"]["quarantined_messages"] >= 1
            and status["flows"][0]["counts"]["quarantined_records_24h"] >= 1
        ),
        timeout=300,
    )
    return {"good": good, "keyless": keyless}


# ---- status -------------------------------------------------------------------------------------------
def test_status_of_a_succeeded_a_failed_and_a_never_run_flow(
    admin: httpx.Client, ran: dict[str, list[str]]
) -> None:
    status = _status(admin, "obs")
    flows = {f["flow"]: f for f in status["flows"]}
    assert set(flows) == {"good", "tune", "idle", "bad"}
    assert status["health"] == "failing"
    assert "flow bad: last run failed" in status["reasons"]

    good = flows["good"]
    assert good["deployed"] and not good["is_paused"]
    assert good["last_run"]["run_id"] == ran["obsco__obs__good"][0]
    assert good["last_run"]["state"] == "success" and good["last_run"]["end_date"]
    # Two rows (the default row_count) from the one run of this flow.
    assert good["counts"]["rows_loaded_24h"] == 2
    assert good["next_run"] == {"logical_date": None, "create_after": None, "trigger": "manual"}

    bad = flows["bad"]
    assert bad["last_run"]["state"] == "failed"
    assert bad["last_run"]["failed_step"] == "boom"
    assert bad["last_run"]["error"] == {"step": "boom", "message": "step 'boom' failed", "code": None}
    assert PASSWORD not in json.dumps(status) and EXTRA_SECRET not in json.dumps(status)

    idle = flows["idle"]
    assert idle["last_run"] is None and idle["counts"]["rows_loaded_24h"] == 0


def test_health_words_healthy_never_run_paused_and_config_problem(
    stack: AirflowStack, admin: httpx.Client, ran: dict[str, list[str]]
) -> None:
    clean = _status(admin, "clean")
    assert (clean["health"], clean["reasons"]) == ("healthy", [])
    once = clean["flows"][0]
    assert once["next_run"]["trigger"] == "schedule" and once["next_run"]["create_after"]
    # Three rows per run: the manual one, and the scheduler's catch-up of the last @daily tick if it ran.
    runs = stack.sql("SELECT count(*) FROM dag_run WHERE dag_id = 'obsco__clean__once' AND state = 'success'")
    assert once["counts"]["rows_loaded_24h"] == clean["counts"]["rows_loaded_24h"] == 3 * runs[0][0]

    assert _status(admin, "quiet")["health"] == "never run"

    path = f"{API}/obsco/instances/quiet"
    etag = admin.get(path).headers["etag"]
    deactivated = admin.post(f"{path}/deactivate", headers={"If-Match": etag})
    assert deactivated.status_code == 200, deactivated.text
    try:
        assert _status(admin, "quiet")["health"] == "paused"
        refused = admin.post(f"{path}/flows/later/runs", json={})
        assert refused.status_code == 409 and refused.json()["error"] == "paused"
    finally:
        etag = admin.get(path).headers["etag"]
        assert admin.post(f"{path}/activate", headers={"If-Match": etag}).status_code == 200

    # A hand edit (not through the API, which would refuse it) breaks the quiet block only.
    customer_file = Path(stack.include) / "customers" / "obsco.yaml"  # type: ignore[attr-defined]
    original = customer_file.read_text()
    broken = yaml.safe_load(original)
    broken["integrations"]["quiet"]["config"] = {"size": "many"}
    customer_file.write_text(yaml.safe_dump(broken, sort_keys=False))
    try:
        status = _status(admin, "quiet")
        assert status["health"] == "config problem"
        assert [p["key_path"] for p in status["config_problems"]] == ["integrations.quiet.config.size"]
        # Another block of the same file: healthy, but told that the whole file runs on its last valid copy.
        clean = _status(admin, "clean")
        assert clean["health"] == "healthy" and clean["running_on_last_valid"]
    finally:
        customer_file.write_text(original)
    assert _status(admin, "quiet")["health"] == "never run"


def test_degraded_by_a_quarantined_message(admin: httpx.Client, inbox: dict[str, str]) -> None:
    status = _status(admin, "inbox")
    assert status["health"] == "degraded"
    # The record refused by the load counts for 24 h, its message entry until it is replayed (after the
    # replay test the replayed copy's entry stands for it), so the reasons name records and/or messages.
    assert status["flows"][0]["counts"]["quarantined_records_24h"] >= 1
    assert any(r.startswith("flow events:") and "quarantined" in r for r in status["reasons"]), status
    assert status["flows"][0]["next_run"]["trigger"] == "event"


# ---- runs ---------------------------------------------------------------------------------------------
def test_runs_are_paginated_newest_first_with_the_failed_step_and_a_redacted_log_excerpt(
    stack: AirflowStack, admin: httpx.Client, ran: dict[str, list[str]]
) -> None:
    first = admin.get(f"{OBS}/flows/bad/runs", params={"limit": 1}).json()
    second = admin.get(f"{OBS}/flows/bad/runs", params={"limit": 1, "offset": 1}).json()
    assert first["total"] == second["total"] == 2
    assert [r["run_id"] for r in first["runs"] + second["runs"]] == ran["obsco__obs__bad"]
    run = first["runs"][0]
    assert run["state"] == "failed" and run["failed_step"] == "boom"
    assert run["error"] == {"step": "boom", "message": "step 'boom' failed", "code": None}
    excerpt = run["log_excerpt"]
    assert "ValueError" in excerpt and "the partner API refused the credential" in excerpt
    assert PASSWORD not in excerpt and EXTRA_SECRET not in excerpt and "***" in excerpt
    assert len(excerpt.splitlines()) <= 40
    # The task's own log holds them: the masking is this endpoint's, not an accident of the task.
    logs = "".join(
        p.read_text(errors="replace") for p in (stack.home / "logs").rglob("*.log") if "boom" in str(p)
    )
    assert PASSWORD in logs

    assert admin.get(f"{OBS}/flows/bad/runs", params={"limit": 0}).status_code == 422
    assert admin.get(f"{OBS}/flows/nope/runs").status_code == 404


# ---- actions ------------------------------------------------------------------------------------------
def test_run_now_with_an_override_and_refusals_naming_the_key(
    stack: AirflowStack, admin: httpx.Client, pg_db: str
) -> None:
    run_id = _run_now(admin, f"{OBS}/flows/tune/runs", {"config": {"row_count": 4}})
    assert _finished(stack, "obsco__obs__tune", run_id) == "success"
    assert rows(pg_db, "SELECT count(*) FROM obs_tune WHERE tag = 'obsco'") == [(4,)]

    for body, key in (
        ({"config": {"row_count": 0}}, "config.row_count"),
        ({"config": {"row_count": "many"}}, "config.row_count"),
        ({"config": {"rows": 3}}, "config.rows"),
        ({"conf": {}}, "conf"),
    ):
        answer = admin.post(f"{OBS}/flows/tune/runs", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["detail"].startswith(f"{key}:"), answer.text
    assert admin.post(f"{OBS}/flows/tune/runs", content=b"[1]").status_code == 400


def test_a_jinja_marker_in_a_runs_config_never_renders(
    stack: AirflowStack, admin: httpx.Client, pg_db: str
) -> None:
    """A run's config values are filled into templated options before Jinja renders them, so a marker in
    one would run as a template that reads any connection, another customer's included. The instances API
    refuses it; a run started around that check, through Airflow's own REST API (which checks params only
    against their JSON Schema), fails naming the key, and the secret reaches neither the table nor a log."""
    probe = "{{ conn.obsco_api.password }}"
    answer = admin.post(f"{API}/obsco/instances/echo/flows/say/runs", json={"config": {"note": probe}})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        "config.note: customer values may not contain Jinja markers ('{{', '{%', '{#')"
    )
    assert stack.sql("SELECT count(*) FROM dag_run WHERE dag_id = 'obsco__echo__say'") == [(0,)]

    admin.patch("/api/v2/dags/obsco__echo__say", json={"is_paused": False}).raise_for_status()
    started = admin.post(
        "/api/v2/dags/obsco__echo__say/dagRuns", json={"logical_date": None, "conf": {"note": probe}}
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["dag_run_id"]
    assert _finished(stack, "obsco__echo__say", run_id) == "failed"
    logs = "".join(
        p.read_text(errors="replace")
        for p in (stack.home / "logs").rglob("*.log")
        if "obsco__echo__say" in str(p)
    )
    assert "config.note: customer values may not contain Jinja markers" in logs
    # The scheduler's log holds every task's output; another flow of this module raises with the password.
    echo_lines = [line for line in stack.log("scheduler").splitlines() if "obsco__echo__say" in line]
    assert PASSWORD not in logs and not [line for line in echo_lines if PASSWORD in line]
    assert stack.sql(
        "SELECT count(*) FROM dag_run WHERE dag_id = 'obsco__echo__say' AND state = 'failed'"
    ) == [(1,)]
    tables = rows(pg_db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'obs_echo'")
    if tables == [(1,)]:
        assert rows(pg_db, f"SELECT count(*) FROM obs_echo WHERE tag = '{PASSWORD}'") == [(0,)]

    # The same run with a plain value goes through: the check is on markers, not on the key.
    plain = admin.post(f"{API}/obsco/instances/echo/flows/say/runs", json={"config": {"note": "hello"}})
    assert plain.status_code == 201, plain.text
    assert _finished(stack, "obsco__echo__say", plain.json()["run_id"]) == "success"
    assert rows(pg_db, "SELECT tag, count(*) FROM obs_echo GROUP BY tag") == [("hello", 2)]


def test_retry_of_a_failed_run(stack: AirflowStack, admin: httpx.Client, ran: dict[str, list[str]]) -> None:
    run_id = ran["obsco__obs__bad"][0]
    tries = f"SELECT try_number FROM task_instance WHERE dag_id = 'obsco__obs__bad' AND run_id = '{run_id}'"
    before = stack.sql(tries)[0][0]
    # Two retries at once: one clears the step, the other finds the run queued again.
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda _: admin.post(f"{OBS}/flows/bad/runs/{run_id}/retry"), range(2)))
    answers.sort(key=lambda a: a.status_code)
    assert [a.status_code for a in answers] == [200, 409], [a.text for a in answers]
    assert answers[0].json()["cleared_steps"] == ["boom"]
    assert answers[1].json()["error"] == "not_failed"
    stack.wait_for("the step tried again", lambda: stack.sql(tries)[0][0] == before + 1, timeout=180)
    assert _finished(stack, "obsco__obs__bad", run_id) == "failed"

    succeeded = admin.post(f"{OBS}/flows/good/runs/{ran['obsco__obs__good'][0]}/retry")
    assert succeeded.status_code == 409 and succeeded.json()["error"] == "not_failed"
    assert admin.post(f"{OBS}/flows/bad/runs/no-such-run/retry").status_code == 404


def test_replay_of_quarantined_messages_and_a_stored_webhook(
    stack: AirflowStack, admin: httpx.Client, inbox: dict[str, str]
) -> None:
    path = f"{API}/obsco/instances/inbox/replay"
    answer = admin.post(path, json={"dead_letters": False})
    assert answer.status_code == 200, answer.text
    outcomes = {o["message_id"]: o["outcome"] for o in answer.json()["flows"][0]["quarantined"]}
    assert outcomes[inbox["keyless"]].startswith(f"queued again as {inbox['keyless']}#replay-")
    # Still without its key: the replay is set aside again under its own id, once.
    stack.wait_for(
        "the replay quarantined again",
        lambda: _status(admin, "inbox")["counts"]["quarantined_messages"] >= 1,
        timeout=180,
    )
    again = admin.post(path, json={"flow": "events", "quarantined": True, "message_ids": [inbox["keyless"]]})
    assert again.json()["flows"][0]["quarantined"][0]["outcome"].startswith("already replayed as")

    runs = "SELECT count(*) FROM dag_run WHERE dag_id = 'obsco__inbox__events'"
    before = stack.sql(runs)[0][0]
    webhook = admin.post(path, json={"flow": "events", "quarantined": False, "webhooks": [inbox["good"]]})
    assert webhook.status_code == 200, webhook.text
    assert isinstance(webhook.json()["flows"][0]["webhooks"][0]["asset_event_id"], int)
    stack.wait_for("a run of the replayed webhook", lambda: stack.sql(runs)[0][0] > before, timeout=120)

    for body in ({"message_ids": ["x"]}, {"quarantined": "yes"}, {"what": 1}):
        assert admin.post(path, json=body).status_code == 422, body
    missing = admin.post(path, json={"flow": "events", "webhooks": ["msg_never_sent"]})
    assert missing.status_code == 404


# ---- tenants ------------------------------------------------------------------------------------------
ENDPOINTS = [
    ("GET", "/instances/obs/status", None),
    ("GET", "/instances/obs/flows/bad/runs", None),
    ("POST", "/instances/obs/flows/good/runs", {}),
    ("POST", "/instances/obs/flows/bad/runs/some-run/retry", None),
    ("POST", "/instances/inbox/replay", {}),
]


@pytest.mark.parametrize(("method", "suffix", "body"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_another_customers_token_gets_the_same_404_as_for_no_customer(
    stack: AirflowStack, admin: httpx.Client, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    with _customer_client(stack, admin, "otherco", ["read", "write"]) as other:
        theirs = other.request(method, f"{API}/obsco{suffix}", json=body)
        nobody = other.request(method, f"{API}/nobody{suffix}", json=body)
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() == {**nobody.json(), "detail": nobody.json()["detail"].replace("nobody", "obsco")}
    with _customer_client(stack, admin, "obsco", ["read"]) as own_read_only:
        answer = own_read_only.request(method, f"{API}/obsco{suffix}", json=body)
    if method == "GET":
        assert answer.status_code == 200, answer.text
    else:
        assert answer.status_code == 403 and answer.json()["error"] == "forbidden"


def test_dead_letters_counted_listed_and_replayed_one_from_the_page(
    stack: AirflowStack,
    admin: httpx.Client,
    crm: CrmServer,
    pg_db: str,
    monkeypatch: pytest.MonkeyPatch,
    browser_page: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    from b2b_integrations.clients.sql import get_db_hook
    from b2b_integrations.events.delivery import deliver
    from b2b_integrations.events.ordering import OutgoingEvent
    from b2b_integrations.sources.retries import RetryPolicy
    from b2b_integrations.state.event_deliveries import TargetScope

    # Two events given up on by the flow's own delivery code while the partner answered 500.
    monkeypatch.setenv("AIRFLOW_CONN_OBSCO_DB", f"{PG}/{pg_db}")
    monkeypatch.setenv("AIRFLOW_CONN_OBSCO_PARTNER", _partner_conn(crm))
    crm.admin(f"inbound/{SINK}/responses", {"statuses": [500] * 6})
    events = []
    for key in ("c1", "c2"):
        event_id = f"evt_{key}_{uuid.uuid4().hex[:6]}"
        at = "2026-12-01T08:00:00.000000+00:00"
        payload = {"type": "contact.updated", "id": event_id, "occurred_at": at, "data": {"id": key}}
        events.append(OutgoingEvent(event_id, key, at, payload))
    hook, _ = get_db_hook("obsco_db")
    target = {"type": "webhook", "connection": "obsco_partner", "endpoint": f"/inbound/{SINK}", "timeout": 5}
    scope = TargetScope("obsco", "outbound", "push", "webhook")
    with hook.get_conn() as conn:
        counts = deliver(
            events,
            conn,
            hook.placeholder,
            scope,
            target,
            RetryPolicy(3, 0, 0),
            False,
            2,
            logging.getLogger(__name__),
        )
    assert counts["dead_lettered"] == 2

    status = _status(admin, "outbound")
    assert status["flows"][0]["counts"]["dead_letters"] == 2 and status["counts"]["dead_letters"] == 2

    # The engineers' customer page lists each letter with its last error, oldest first.
    detail = admin.get("/b2b/api/v1/overview/customers/obsco")
    assert detail.status_code == 200, detail.text
    (outbound,) = [i for i in detail.json()["instances"] if i["integration"] == "outbound"]
    letters = outbound["dead_letters"]
    assert [(d["flow"], d["target"], d["event_id"], d["attempts"]) for d in letters] == [
        ("push", "webhook", e.event_id, 3) for e in sorted(events, key=lambda e: e.event_id)
    ]
    assert all("500" in d["last_error"] for d in letters), letters

    # The partner is back: one letter is replayed alone from the page, then the rest; each delivered once.
    first, second = sorted(e.event_id for e in events)
    path = f"{API}/obsco/instances/outbound/replay"
    for body in ({"quarantined": False, "event_ids": [first]}, {"quarantined": False, "flow": "push",
                 "event_ids": [first], "dead_letters": False}):  # fmt: skip
        assert admin.post(path, json=body).status_code == 422  # no flow named / contradiction
    answer = admin.post(path, json={"quarantined": False, "flow": "push", "event_ids": ["evt_nobody"]})
    assert answer.status_code == 200, answer.text
    assert [(r["events"], r["delivered"]) for r in answer.json()["flows"][0]["dead_letters"]] == [(0, 0)]
    page = browser_page
    log_in_to_airflow(page, stack)
    page.goto(stack.url + "/b2b/ui/integrations?show=obsco")
    letters_table = page.get_by_role("table", name=re.compile("Dead letters"))
    letters_table.get_by_role("button", name=f"Replay event {second}").wait_for()
    assert letters_table.get_by_role("row").count() == 3  # header + two letters
    section = page.locator("section.instance").filter(has=letters_table)
    screenshot(page, "integrations-dead-letters", tmp_path, element=section)
    letters_table.get_by_role("button", name=f"Replay event {first}").click()
    page.get_by_role("status").filter(has_text="dead letters of push: 1 delivered").wait_for()
    detail = admin.get("/b2b/api/v1/overview/customers/obsco")
    (outbound,) = [i for i in detail.json()["instances"] if i["integration"] == "outbound"]
    assert [d["event_id"] for d in outbound["dead_letters"]] == [second]
    answer = admin.post(path, json={"quarantined": False})
    assert answer.status_code == 200, answer.text
    assert answer.json()["flows"] == [
        {
            "flow": "push",
            "dead_letters": [
                {"target": "webhook", "events": 1, "delivered": 1, "already_delivered": 0, "superseded": 0,
                 "dead_lettered": 0}
            ],
        }
    ]  # fmt: skip
    assert _status(admin, "outbound")["flows"][0]["counts"]["dead_letters"] == 0
    received = crm.admin_get(f"inbound/{SINK}")
    entries = received["deliveries"] if isinstance(received, dict) else received
    accepted = sorted(e["headers"]["webhook-id"] for e in entries if 200 <= e["status"] < 300)
    assert accepted == sorted(e.event_id for e in events)
