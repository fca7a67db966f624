"""Event-driven export, two-way and hybrid end to end on a real Airflow (API server, scheduler,
dag-processor), the demo CRM as the third party and PostgreSQL as our app's database.

Our app is played by SQL: ``app_contacts`` has a trigger that writes an outbox row for every change (with
the row's ``origin``), and the outbox poller DAG (``include/app.yaml``) publishes those rows through the
authenticated events endpoint. Events can also be published directly with a token.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from airflow_stack import AIRFLOW, AirflowStack, start_airflow_stack
from crm_server import CrmServer
from helpers import PG, shipped_template, write_include
from helpers import pg_rows as rows

pytestmark = pytest.mark.airflow_stack

ADMIN_PASSWORD = "e2e-admin-password"
CRM_HOOK_SECRET = "whsec_" + base64.b64encode(b"crm-contact-webhooks-signing-key").decode()
INVOICE_SECRETS = {
    c: "whsec_" + base64.b64encode(f"{c}-invoice-hooks-signing-key".encode()).decode() for c in ("hya", "hyb")
}

APP_SCHEMA = """
CREATE TABLE app_contacts (
    account_id VARCHAR(60) NOT NULL, crm_id BIGINT NOT NULL, first_name VARCHAR(100), last_name VARCHAR(100),
    email VARCHAR(200), notes TEXT, updated_at TIMESTAMPTZ NOT NULL, origin VARCHAR(120),
    PRIMARY KEY (account_id, crm_id));
CREATE TABLE b2b_outbox (
    id BIGSERIAL PRIMARY KEY, event_type VARCHAR(100) NOT NULL, event_id VARCHAR(200) NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL, data TEXT NOT NULL, origin VARCHAR(120),
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
CREATE TABLE probe_outbox (LIKE b2b_outbox INCLUDING ALL);
CREATE TABLE probe_events (id VARCHAR(200) NOT NULL, n BIGINT);
CREATE FUNCTION app_contact_changed() RETURNS trigger AS $$
BEGIN
  INSERT INTO b2b_outbox (event_type, event_id, occurred_at, data, origin)
  VALUES ('contact.updated', gen_random_uuid()::text, NEW.updated_at,
          json_build_object('account_id', NEW.account_id, 'crm_id', NEW.crm_id, 'first_name', NEW.first_name,
                            'last_name', NEW.last_name, 'email', NEW.email)::text,
          NEW.origin);
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER app_contact_changed AFTER UPDATE ON app_contacts FOR EACH ROW EXECUTE FUNCTION app_contact_changed();
"""

PROBE_TEMPLATE = {
    "name": "outbox_probe",
    "connections": {"app_db": {"type": "postgres"}},
    "flows": {
        "probes": {
            "trigger": {"type": "app_event", "events": ["probe.created"]},
            "steps": [
                {
                    "id": "flatten",
                    "kind": "transform",
                    "callable": "b2b_integrations.transforms.common.map_fields",
                    "options": {"fields": {"id": "id", "n": "data.n"}},
                },
                {
                    "id": "load",
                    "kind": "load",
                    "connection": "app_db",
                    "table": "probe_events",
                    # No key (the table has none): an event loaded twice is two rows, where an upsert by
                    # id would hide it.
                    "mode": "insert",
                },
            ],
        }
    },
}


def _http_conn(url_host: str, port: int, password: str, path: str = "", login: str | None = None) -> str:
    conn: dict[str, Any] = {
        "conn_type": "http",
        "host": f"http://{url_host}:{port}{path}",
        "password": password,
    }
    if login:
        conn["login"] = login
    return json.dumps(conn)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_db: str, crm: CrmServer) -> Iterator[AirflowStack]:
    import psycopg2

    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(APP_SCHEMA)
    hybrid = {"connections": {"invoice_hook": "", "crm_api": "e2e_crm_oauth", "app_db": "e2e_app_db"}}
    customers = {
        "twoway": {
            "id": "twoway",
            "name": "Two Way Co",
            "integrations": {
                "crm_two_way": {
                    "config": {"account_id": "twoway"},
                    "connections": {
                        "crm_api": "e2e_crm_key",
                        "crm_webhook_secret": "e2e_crm_hooks",
                        "app_db": "e2e_app_db",
                    },
                },
                "outbox_probe": {"connections": {"app_db": "e2e_app_db"}},
            },
        },
        **{
            cid: {
                "id": cid,
                "name": cid.upper(),
                "integrations": {
                    "crm_hybrid": {
                        "config": {"account_id": cid, "min_amount_cents": minimum},
                        "connections": {**hybrid["connections"], "invoice_hook": f"e2e_{cid}_hook"},
                        "flows": {"companies_in": {"enabled": False}},
                    }
                },
            }
            for cid, minimum in (("hya", 0), ("hyb", 10_000))
        },
    }
    include = write_include(
        tmp_path_factory.mktemp("export") / "include",
        {name: shipped_template(name) for name in ("crm_two_way", "crm_hybrid")}
        | {"outbox_probe": PROBE_TEMPLATE},
        customers,
    )
    passwords = include.parent / "passwords.json"
    passwords.write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    (include / "app.yaml").write_text(
        "outbox:\n  connection: e2e_app_db\n  api_connection: e2e_b2b_api\n  settle_seconds: 0.5\n"
        "  max_seconds: 30\n  poll_interval: 0.3\n"
    )
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW_CONN_E2E_APP_DB": f"{PG}/{pg_db}",
        "AIRFLOW_CONN_E2E_CRM_KEY": _http_conn(crm.host, crm.port, crm.api_key),
        "AIRFLOW_CONN_E2E_CRM_OAUTH": _http_conn(crm.host, crm.port, crm.client_secret, login=crm.client_id),
        "AIRFLOW_CONN_E2E_CRM_HOOKS": json.dumps({"conn_type": "generic", "password": CRM_HOOK_SECRET}),
        **{
            f"AIRFLOW_CONN_E2E_{cid.upper()}_HOOK": _http_conn(crm.host, crm.port, secret, f"/inbound/{cid}")
            for cid, secret in INVOICE_SECRETS.items()
        },
    }
    stack = start_airflow_stack(include, env)
    # The API server's address is known only now: the poller's connection to it goes into the metadata DB
    # (the outbox DAG retries after 15 s if it ran before this).
    api = {"conn_type": "http", "host": stack.url, "login": "admin", "password": ADMIN_PASSWORD}
    stack.env["AIRFLOW_CONN_E2E_B2B_API"] = json.dumps(api)
    added = subprocess.run(
        [AIRFLOW, "connections", "add", "e2e_b2b_api", "--conn-json", json.dumps(api)],
        env={k: v for k, v in stack.env.items() if k != "AIRFLOW_CONN_E2E_B2B_API"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr[-2000:]
    try:
        for dag_id in (
            "twoway__crm_two_way__contacts_out",
            "hya__crm_hybrid__invoices_out",
            "b2b_app__outbox",
        ):
            stack.wait_for(
                f"DAG {dag_id} parsed", lambda d=dag_id: stack.sql(f"SELECT 1 FROM dag WHERE dag_id = '{d}'")
            )
        yield stack
    finally:
        stack.stop()


def _publish(stack: AirflowStack, events: list[dict[str, Any]], token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{stack.url}/b2b/events", json={"events": events}, headers=headers, timeout=60)


def _token(stack: AirflowStack) -> str:
    """The admin's JWT (this stack's passwords file is ours, so the password is known)."""
    answer = httpx.post(
        f"{stack.url}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def _idle(stack: AirflowStack, dag_ids: tuple[str, ...]) -> bool:
    """No run of these DAGs queued or running, and no asset event waiting to start one (Airflow queues an
    event for its consumers in the transaction that stores it, and drops the entry when the run is made)."""
    listed = ", ".join(f"'{d}'" for d in dag_ids)
    return stack.sql(
        f"SELECT (SELECT count(*) FROM dag_run WHERE dag_id IN ({listed}) AND state IN ('queued', 'running'))"
        f" + (SELECT count(*) FROM asset_dag_run_queue WHERE target_dag_id IN ({listed}))"
    ) == [(0,)]


def _invoice(account: str, amount_cents: int) -> dict[str, Any]:
    return {
        "type": "invoice.paid",
        "id": f"evt_{uuid.uuid4().hex[:12]}",
        "occurred_at": "2026-11-29T08:00:00Z",
        "data": {
            "account_id": account,
            "invoice_id": f"INV-{uuid.uuid4().hex[:6]}",
            "amount_cents": amount_cents,
        },
    }


def _received(crm: CrmServer, sink: str) -> list[dict[str, Any]]:
    received = crm.admin_get(f"inbound/{sink}")
    entries = received["deliveries"] if isinstance(received, dict) else received
    return [e for e in entries if 200 <= e["status"] < 300]


def test_app_events_reach_each_subscribed_customer_and_no_other(stack: AirflowStack, crm: CrmServer) -> None:
    unauthenticated = _publish(stack, [_invoice("hya", 100)], None)
    assert unauthenticated.status_code == 401
    token = _token(stack)
    events = [_invoice("hya", 500), _invoice("hya", 20_000), _invoice("hyb", 500), _invoice("hyb", 20_000)]
    events.append(_invoice("nobody", 99_000))
    answer = _publish(stack, events, token)
    assert answer.status_code == 202, answer.text
    assert [e["flows"] for e in answer.json()["events"]] == [
        ["hya/crm_hybrid/invoices_out"],
        ["hya/crm_hybrid/invoices_out"],
        ["hyb/crm_hybrid/invoices_out"],
        ["hyb/crm_hybrid/invoices_out"],
        [],
    ]
    assert _publish(stack, events[:1], token).json()["events"][0]["duplicates"] == 1  # a publish retry
    stack.wait_for("hya's two invoices at its endpoint", lambda: len(_received(crm, "hya")) >= 2, timeout=180)
    stack.wait_for(
        "hyb's large invoice at its endpoint", lambda: len(_received(crm, "hyb")) >= 1, timeout=180
    )
    # Everything stored has been consumed and every run has finished: nothing more can be sent.
    invoice_dags = ("hya__crm_hybrid__invoices_out", "hyb__crm_hybrid__invoices_out")
    stack.wait_for("the invoice flows to be idle", lambda: _idle(stack, invoice_dags), timeout=180)
    by_customer = {cid: _received(crm, cid) for cid in ("hya", "hyb")}
    for cid, entries in by_customer.items():
        for entry in entries:  # signed with that customer's secret, verifiable with the standard library
            assert Webhook(INVOICE_SECRETS[cid]).verify(entry["body"], entry["headers"])
    assert Counter(e["headers"]["webhook-id"] for e in by_customer["hya"]) == Counter(
        {events[0]["id"]: 1, events[1]["id"]: 1}
    )
    assert [e["headers"]["webhook-id"] for e in by_customer["hyb"]] == [
        events[3]["id"]
    ]  # hyb: >= 100.00 only


def _contact(crm: CrmServer, crm_id: int) -> dict[str, Any]:
    return crm.api("GET", f"/api/contacts/{crm_id}").json()


def test_two_way_edits_converge_without_echo(stack: AirflowStack, crm: CrmServer, pg_db: str) -> None:
    import psycopg2

    crm.api(
        "POST",
        "/api/webhooks/subscriptions",
        json={
            "url": f"{stack.url}/b2b/webhooks/twoway/crm_two_way/contacts_in",
            "secret": CRM_HOOK_SECRET,
            "scheme": "standard",
            "events": ["contact.updated"],
        },
    ).raise_for_status()
    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        for crm_id in (3, 4):  # our app's copies, older than the CRM's
            c = _contact(crm, crm_id)
            cur.execute(
                "INSERT INTO app_contacts VALUES ('twoway', %s, %s, %s, %s, 'VIP: call first', '2020-01-01', NULL)",
                (crm_id, c["first_name"], c["last_name"], c["email"]),
            )
    # 1. Edited in our app: reaches the CRM once; the CRM's echo does not come back out.
    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute("UPDATE app_contacts SET first_name = 'Zed', updated_at = now() WHERE crm_id = 3")
    stack.wait_for("the app's edit in the CRM", lambda: _contact(crm, 3)["first_name"] == "Zed", timeout=240)
    # 2. Edited in the CRM: reaches our app once, nothing goes back to the CRM.
    crm.api("PATCH", "/api/contacts/4", json={"first_name": "Quinn"}).raise_for_status()
    stack.wait_for(
        "the CRM's edit in our app",
        lambda: (
            rows(pg_db, "SELECT first_name, origin FROM app_contacts WHERE crm_id = 4")
            == [("Quinn", "twoway/crm_two_way")]
        ),
        timeout=240,
    )
    # Any echo would be a new CRM webhook, outbox row, app event or run: wait until the whole loop is quiet
    # (the same snapshot twice, nothing pending anywhere) rather than for a while.
    stack.wait_for("the two-way loop to be quiet", _quiet_twice(stack, crm, pg_db), timeout=240)
    delivered = rows(
        pg_db,
        "SELECT event_key, count(*) FROM b2b_event_deliveries WHERE flow = 'contacts_out' AND status = 'delivered' "
        "GROUP BY event_key ORDER BY event_key",
    )
    assert delivered == [("3", 1)]  # one PATCH, for the app's edit; none for the CRM's edit or the echoes
    assert _contact(crm, 3)["first_name"] == "Zed" and _contact(crm, 4)["first_name"] == "Quinn"
    assert rows(pg_db, "SELECT first_name, notes FROM app_contacts WHERE crm_id = 3") == [
        ("Zed", "VIP: call first")
    ]
    sent = {
        e["msg_id"] for e in crm.admin_get("webhooks/log") if e.get("status") and 200 <= e["status"] < 300
    }
    assert len(sent) == 2  # the CRM changed twice (our PATCH of 3, the user's PATCH of 4): no ping-pong


_TWO_WAY_DAGS = ("twoway__crm_two_way__contacts_in", "twoway__crm_two_way__contacts_out")


def _two_way_snapshot(stack: AirflowStack, crm: CrmServer, pg_db: str) -> tuple[Any, ...] | None:
    """Counters of every hop of the loop, or None while a hop has work in hand: a CRM webhook not yet
    answered, an outbox row not yet published, an asset event not yet turned into a run, a run not done."""
    if crm.admin_get("webhooks/pending")["pending"] or not _idle(stack, _TWO_WAY_DAGS):
        return None
    outbox = rows(
        pg_db,
        "SELECT (SELECT max(id)::text FROM b2b_outbox),"
        " (SELECT cursor_value FROM b2b_sync_cursors WHERE flow = 'b2b_outbox')",
    )[0]
    if outbox[0] != outbox[1]:
        return None
    listed = ", ".join(f"'{d}'" for d in _TWO_WAY_DAGS)
    runs = stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id IN ({listed})")[0][0]
    receipts = stack.sql("SELECT count(*) FROM b2b_webhook_receipts WHERE customer_id = 'twoway'")[0][0]
    return (len(crm.admin_get("webhooks/log")), outbox[0], runs, receipts)


def _quiet_twice(stack: AirflowStack, crm: CrmServer, pg_db: str) -> Callable[[], bool]:
    """A check that is true when two consecutive snapshots are quiet and equal: the hops are sampled one
    after the other, so a message moving between two of them during one sampling changes a counter."""
    last: list[tuple[Any, ...] | None] = [None]

    def check() -> bool:
        snapshot = _two_way_snapshot(stack, crm, pg_db)
        quiet = snapshot is not None and snapshot == last[0]
        last[0] = snapshot
        return quiet

    return check


def _poller(stack: AirflowStack, max_seconds: float) -> subprocess.Popen[bytes]:
    """The outbox poller in a process of its own, on the probe outbox (its own position)."""
    script = (
        "from b2b_integrations.operators.outbox_poll import OutboxPollOperator\n"
        "OutboxPollOperator(task_id='p', db_conn_id='e2e_app_db', api_conn_id='e2e_b2b_api', table='probe_outbox',"
        f" batch_size=100, settle_seconds=0, max_seconds={max_seconds}, poll_interval=0.2)"
        ".execute({'run_id': 'kill-test'})\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], env=stack.env, start_new_session=True)


def _receipts(stack: AirflowStack) -> int:
    return stack.sql("SELECT count(*) FROM b2b_webhook_receipts WHERE flow = 'probes'")[0][0]


def test_outbox_poller_killed_mid_batch_loses_nothing(stack: AirflowStack, pg_db: str) -> None:
    import psycopg2

    total = 3000
    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO probe_outbox (event_type, event_id, occurred_at, data) "
            "SELECT 'probe.created', 'probe_' || g, now(), json_build_object('n', g)::text "
            "FROM generate_series(1, %s) g",
            (total,),
        )
    child = _poller(stack, 120)
    try:
        stack.wait_for(
            "the poller to publish some batches", lambda: _receipts(stack) >= 500, timeout=120, every=0.1
        )
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # mid-run: a batch published, its position perhaps not
        child.wait()
    killed_at = _receipts(stack)
    assert killed_at < total, "the poller finished before it could be killed; the test proves nothing"
    again = _poller(stack, 3)
    assert again.wait(timeout=240) == 0
    assert rows(pg_db, "SELECT cursor_value FROM b2b_sync_cursors WHERE flow = 'probe_outbox'") == [
        (str(rows(pg_db, "SELECT max(id) FROM probe_outbox")[0][0]),)
    ]
    assert _receipts(stack) == total  # the republished batch was acknowledged as duplicates
    stack.wait_for(
        f"all {total} probes loaded",
        lambda: rows(pg_db, "SELECT count(*) FROM probe_events")[0][0] >= total,
        timeout=300,
    )
    stack.wait_for("the probe flow to be idle", lambda: _idle(stack, ("twoway__outbox_probe__probes",)))
    # probe_events has no key: a probe published or loaded twice would be a second row.
    assert rows(pg_db, "SELECT count(*), count(DISTINCT id), min(n), max(n) FROM probe_events") == [
        (total, total, 1, total)
    ]
