"""Event-driven import end to end on a real Airflow: signed webhooks -> API server -> asset events ->
scheduler -> the customer's asset-triggered DAG -> rows in the app database."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from airflow_stack import AirflowStack, start_airflow_stack
from helpers import PG, shipped_template, write_include
from helpers import pg_rows as rows

pytestmark = pytest.mark.airflow_stack

SECRET = "whsec_" + base64.b64encode(b"e2e-billing-signing-key-01234567").decode()
DAG_ID = "e2eco__billing_webhooks__invoice_events"
URL = "/b2b/webhooks/e2eco/billing_webhooks/invoice_events"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_db: str) -> Iterator[AirflowStack]:
    include = write_include(
        tmp_path_factory.mktemp("e2e") / "include",
        {"billing_webhooks": shipped_template("billing_webhooks")},
        {
            "e2eco": {
                "id": "e2eco",
                "name": "E2E Co",
                "integrations": {
                    "billing_webhooks": {
                        "connections": {"webhook_secret": "e2eco_billing", "app_db": "e2eco_db"}
                    }
                },
            }
        },
    )
    import psycopg2

    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE invoice_events (id VARCHAR(40) PRIMARY KEY, status VARCHAR(20), amount_cents BIGINT, "
            "currency VARCHAR(3))"
        )
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_E2ECO_BILLING": json.dumps({"conn_type": "generic", "password": SECRET}),
            "AIRFLOW_CONN_E2ECO_DB": f"{PG}/{pg_db}",
        },
    )
    try:
        stack.wait_for(
            "the inbox asset of the parsed DAG",
            lambda: stack.sql(
                "SELECT 1 FROM asset WHERE uri = 'b2b://e2eco/billing_webhooks/invoice_events/inbox'"
            ),
        )
        yield stack
    finally:
        stack.stop()


def _delivery(invoice: str, msg_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    payload = {"invoice_id": invoice, "status": "paid", "amount_cents": 1250, "currency": "EUR", "ignored": 1}
    body = json.dumps(payload).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return body, {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body.decode()),
    }


def _successful_runs(stack: AirflowStack) -> int:
    return stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id = '{DAG_ID}' AND state = 'success'")[0][0]


def _unfinished_runs(stack: AirflowStack) -> int:
    return stack.sql(
        f"SELECT count(*) FROM dag_run WHERE dag_id = '{DAG_ID}' AND state IN ('queued', 'running')"
    )[0][0]


def test_a_burst_of_signed_webhooks_all_reach_the_customers_table(stack: AirflowStack, pg_db: str) -> None:
    stack.wait_for("an idle DAG", lambda: _unfinished_runs(stack) == 0)
    successful_before = _successful_runs(stack)
    deliveries = [_delivery(f"BURST-{i:03d}") for i in range(20)]
    with httpx.Client(base_url=stack.url, timeout=30) as client, ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(
            pool.map(lambda d: client.post(URL, content=d[0], headers=d[1]).status_code, deliveries)
        )
        # The same message again, as a sender's retry would send it: acknowledged, not stored twice.
        again = client.post(URL, content=deliveries[0][0], headers=deliveries[0][1])
    assert statuses == [202] * 20
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    stack.wait_for(
        "20 invoices loaded by the consumer DAG",
        lambda: rows(pg_db, "SELECT count(*) FROM invoice_events WHERE id LIKE 'BURST-%'") == [(20,)],
        timeout=180,
    )
    assert rows(
        pg_db, "SELECT status, amount_cents, currency FROM invoice_events WHERE id = 'BURST-007'"
    ) == [("paid", 1250, "EUR")]
    # Every event was consumed by some run, and each run recorded the message ids it handled (other
    # tests' messages are left out: they may have run first). A message handled twice would be listed twice.
    burst = {d[1]["webhook-id"] for d in deliveries}
    handled = [
        message
        for (value,) in stack.sql(
            f"SELECT value FROM xcom WHERE dag_id = '{DAG_ID}' AND task_id = 'normalise' AND key = 'return_value'"
        )
        for message in (value if isinstance(value, dict) else json.loads(value)).get("webhook_events", [])
        if message in burst
    ]
    assert sorted(handled) == sorted(burst)
    stack.wait_for("the consumer runs to finish", lambda: _unfinished_runs(stack) == 0)
    assert 1 <= _successful_runs(stack) - successful_before <= 20
    states = stack.sql(f"SELECT DISTINCT state FROM dag_run WHERE dag_id = '{DAG_ID}'")
    assert states == [("success",)], states


def test_a_bad_signature_starts_nothing(stack: AirflowStack, pg_db: str) -> None:
    body, headers = _delivery("INV-forged")
    response = httpx.post(
        stack.url + URL, content=body.replace(b"1250", b"9999"), headers=headers, timeout=30
    )
    assert response.status_code == 401
    forged_id = headers["webhook-id"]
    # A positive sign that the inbox has moved on: a genuine webhook sent after it is loaded. The consumer
    # reads the inbox from its position, so a stored forged message would have been loaded by then too.
    after = _delivery("INV-after-forged")
    assert httpx.post(stack.url + URL, content=after[0], headers=after[1], timeout=30).status_code == 202
    stack.wait_for(
        "the genuine webhook sent after the forged one",
        lambda: rows(pg_db, "SELECT count(*) FROM invoice_events WHERE id = 'INV-after-forged'") == [(1,)],
        timeout=180,
    )
    assert rows(pg_db, "SELECT count(*) FROM invoice_events WHERE id = 'INV-forged'") == [(0,)]
    assert stack.sql(f"SELECT count(*) FROM b2b_webhook_receipts WHERE message_id = '{forged_id}'") == [(0,)]


def test_a_replayed_webhook_is_processed_again(stack: AirflowStack, pg_db: str) -> None:
    import subprocess
    import sys

    body, headers = _delivery("INV-again", msg_id="msg_replay_e2e")
    assert httpx.post(stack.url + URL, content=body, headers=headers, timeout=30).status_code == 202
    stack.wait_for(
        "the first load",
        lambda: rows(pg_db, "SELECT count(*) FROM invoice_events WHERE id = 'INV-again'") == [(1,)],
    )
    import psycopg2

    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "DELETE FROM invoice_events WHERE id = 'INV-again'"
        )  # as if the first processing was wrong
    replay = subprocess.run(
        [sys.executable, "-m", "b2b_integrations", "replay", "e2eco", "billing_webhooks", "invoice_events", "msg_replay_e2e"],
        env=stack.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    stack.wait_for(
        "the replayed load",
        lambda: rows(pg_db, "SELECT count(*) FROM invoice_events WHERE id = 'INV-again'") == [(1,)],
    )


def test_a_large_webhook_reaches_the_flow_through_the_state_store(stack: AirflowStack, pg_db: str) -> None:
    """Over 64 KB the body is kept in the inbox asset's state store and the task reads it from there."""
    payload = {
        "invoice_id": "INV-large",
        "status": "open",
        "amount_cents": 99,
        "currency": "CHF",
        "notes": "n" * 100_000,
    }
    body = json.dumps(payload).encode()
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body.decode()),
    }
    assert httpx.post(stack.url + URL, content=body, headers=headers, timeout=30).status_code == 202
    stack.wait_for(
        "the large invoice",
        lambda: (
            rows(pg_db, "SELECT status, currency FROM invoice_events WHERE id = 'INV-large'")
            == [("open", "CHF")]
        ),
    )


def test_a_run_with_no_new_events_skips_its_steps_and_succeeds(stack: AirflowStack) -> None:
    import subprocess
    import sys

    stack.wait_for("an idle DAG", lambda: _unfinished_runs(stack) == 0)
    trigger = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "trigger", DAG_ID, "--run-id", "manual_empty"],
        env=stack.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert trigger.returncode == 0, trigger.stderr[-2000:]
    stack.wait_for(
        "the empty run to finish",
        lambda: (
            stack.sql(f"SELECT state FROM dag_run WHERE dag_id = '{DAG_ID}' AND run_id = 'manual_empty'")
            in ([("success",)], [("failed",)])
        ),
    )
    assert stack.sql(f"SELECT state FROM dag_run WHERE dag_id = '{DAG_ID}' AND run_id = 'manual_empty'") == [
        ("success",)
    ]
    states = stack.sql(
        f"SELECT task_id, state FROM task_instance WHERE dag_id = '{DAG_ID}' AND run_id = 'manual_empty'"
    )
    assert sorted(states) == [("load_invoices", "skipped"), ("normalise", "skipped")]
