"""A poison message on a live deployment: a real Airflow (API server, scheduler, dag-processor on
PostgreSQL) runs the customer's webhook flow; a message whose stored body the Execution API cannot return
sits between two signed webhooks sent over HTTP. The flow goes on, the valid invoices load once, the poison
is quarantined, listed and replayed by the CLI."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from airflow_stack import AirflowStack, start_airflow_stack
from helpers import PG, shipped_template, write_include
from helpers import pg_rows as rows

pytestmark = pytest.mark.airflow_stack

SECRET = "whsec_" + base64.b64encode(b"poison-billing-signing-key-0123").decode()
DAG_ID = "poisonlive__billing_webhooks__invoice_events"
URL = "/b2b/webhooks/poisonlive/billing_webhooks/invoice_events"
INBOX = "b2b://poisonlive/billing_webhooks/invoice_events/inbox"

# Written with the event store in the stack's metadata DB, as the endpoint stores a large body (in the
# inbox's state store), but with NaN, which the endpoint itself now refuses.
STORE_POISON = """
import json, sys
from dataclasses import dataclass
from b2b_integrations.webhooks.store import Message, MetadataEventStore

@dataclass(frozen=True)
class Inbox:
    customer_id: str = "poisonlive"
    integration: str = "billing_webhooks"
    flow: str = "invoice_events"
    asset_uri: str = sys.argv[1]

payload = {"invoice_id": "INV-NAN", "status": "paid", "amount_cents": float("nan"), "currency": "EUR"}
print(MetadataEventStore().store_many([Message(Inbox(), "msg_poison", payload, json.dumps(payload).encode(), False)]))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_db: str) -> Iterator[AirflowStack]:
    include = write_include(
        tmp_path_factory.mktemp("poison") / "include",
        {"billing_webhooks": shipped_template("billing_webhooks")},
        {
            "poisonlive": {
                "id": "poisonlive",
                "name": "Poison Live",
                "integrations": {
                    "billing_webhooks": {
                        "connections": {"webhook_secret": "poisonlive_billing", "app_db": "poisonlive_db"}
                    }
                },
            }
        },
    )
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_POISONLIVE_BILLING": json.dumps({"conn_type": "generic", "password": SECRET}),
            "AIRFLOW_CONN_POISONLIVE_DB": f"{PG}/{pg_db}",
        },
    )
    try:
        stack.wait_for(
            "the inbox asset of the parsed DAG",
            lambda: stack.sql(f"SELECT 1 FROM asset WHERE uri = '{INBOX}'"),
        )
        yield stack
    finally:
        stack.stop()


def _send(stack: AirflowStack, invoice: str) -> None:
    body = json.dumps({"invoice_id": invoice, "status": "paid", "amount_cents": 1250, "currency": "EUR"})
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body),
    }
    assert httpx.post(stack.url + URL, content=body, headers=headers, timeout=30).status_code == 202


def _cli(stack: AirflowStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2b_integrations", *args], env=stack.env, capture_output=True, text=True
    )


def _loaded(pg_db: str) -> list[tuple[str, int]]:
    return rows(pg_db, "SELECT id, count(*) FROM invoice_events GROUP BY id ORDER BY id")


def test_a_poison_message_between_two_webhooks_is_quarantined_and_the_flow_goes_on(
    stack: AirflowStack, pg_db: str
) -> None:
    _send(stack, "INV-A")
    stack.wait_for("INV-A loaded", lambda: rows(pg_db, "SELECT to_regclass('invoice_events')") != [(None,)]
                   and _loaded(pg_db) == [("INV-A", 1)], timeout=180)  # fmt: skip
    poison = subprocess.run(
        [sys.executable, "-c", STORE_POISON, INBOX], env=stack.env, capture_output=True, text=True
    )
    assert poison.stdout.splitlines()[-1:] == ["[True]"], poison.stderr[-2000:]
    _send(stack, "INV-B")
    stack.wait_for("INV-B loaded", lambda: ("INV-B", 1) in _loaded(pg_db), timeout=180)
    assert _loaded(pg_db) == [("INV-A", 1), ("INV-B", 1)]

    listed = stack.wait_for(
        "the poison listed",
        lambda: [line for line in _cli(stack, "quarantine", "list", "poisonlive").stdout.splitlines()
                 if line.startswith("billing_webhooks/invoice_events msg_poison quarantined")],
        timeout=60,
    )  # fmt: skip
    assert "step normalise" in listed[0] and "cannot be returned by Airflow's Execution API" in listed[0]
    failed = stack.sql(f"SELECT count(*) FROM task_instance WHERE dag_id = '{DAG_ID}' AND state = 'failed'")
    assert failed == [(0,)]

    replay = _cli(stack, "quarantine", "replay", "poisonlive", "billing_webhooks", "invoice_events", "--all")
    assert replay.returncode == 0 and "msg_poison: queued again as msg_poison#replay-" in replay.stdout
    # The body is still NaN: the replayed message is set aside again, under its own id; nothing else moves.
    stack.wait_for(
        "the replayed poison quarantined again",
        lambda: any(
            line.startswith("billing_webhooks/invoice_events msg_poison#replay-")
            and " quarantined at " in line
            for line in _cli(stack, "quarantine", "list", "poisonlive").stdout.splitlines()
        ),
        timeout=180,
    )
    assert _loaded(pg_db) == [("INV-A", 1), ("INV-B", 1)]
