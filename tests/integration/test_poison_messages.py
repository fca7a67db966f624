"""Poison messages never block an event-driven flow: generated DAGs run for real (dag.test() against the
migrated metadata DB and its Execution API), loading into PostgreSQL. Messages are written to the inbox
with the webhook event store directly, as the endpoint would, including bodies the endpoint now refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from helpers import PG, REPO, pg_rows, shipped_template, write_include

pytestmark = pytest.mark.e2e

TEMPLATE: dict[str, Any] = {
    "name": "billing",
    "connections": {"app_db": {"type": "postgres"}, "webhook_secret": {"type": "generic"}},
    "config": {"currencies": {"type": "string", "default": "EUR"}},
    "defaults": {"retries": 1, "retry_delay_seconds": 1, "retry_exponential_backoff": False},
    "flows": {
        "events": {
            "trigger": {"type": "webhook", "signature": "standard_webhooks", "secret_connection": "webhook_secret"},
            "steps": [
                {
                    "id": "normalise",
                    "kind": "transform",
                    "callable": "poison_transforms.invoices",
                    "options": {"currencies": "${config.currencies}"},
                },
                {
                    "id": "load",
                    "kind": "load",
                    "connection": "app_db",
                    "table": "invoices",
                    "key": ["id"],
                    "create_table": True,
                    "columns": {"id": "VARCHAR(40)", "status": "VARCHAR(20)", "amount_cents": "BIGINT", "currency": "VARCHAR(3)"},
                },
            ],
        }
    },
}  # fmt: skip


@dataclass(frozen=True)
class Inbox:
    customer_id: str
    integration: str
    flow: str
    asset_uri: str


def _deploy(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    customer_id: str,
    db_url: str,
    template: dict[str, Any] = TEMPLATE,
    config: dict[str, Any] | None = None,
) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    integration = template["name"]
    customer = {
        "id": customer_id,
        "name": customer_id,
        "integrations": {
            integration: {
                "config": config or {},
                "connections": {"app_db": f"{customer_id}_db", "webhook_secret": f"{customer_id}_secret"},
            }
        },
    }
    include = write_include(tmp_path / "include", {integration: template}, {customer_id: customer})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("B2B_TRANSFORM_PREFIXES", "b2b_integrations.transforms,poison_transforms")
    monkeypatch.setenv(f"AIRFLOW_CONN_{customer_id.upper()}_DB", db_url)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    (flow,) = template["flows"]
    return bag.dags[f"{customer_id}__{integration}__{flow}"]


def _store(customer_id: str, integration: str, flow: str, messages: list[tuple[str, Any, bool]]) -> None:
    """Each (message id, payload, inline) in its own asset event, in order; not inline = the body goes to
    the inbox's state store, as the endpoint does for a large body."""
    from b2b_integrations.webhooks.store import Message, MetadataEventStore

    inbox = Inbox(customer_id, integration, flow, f"b2b://{customer_id}/{integration}/{flow}/inbox")
    store = MetadataEventStore()
    for message_id, payload, inline in messages:
        body = json.dumps(payload).encode()  # json.dumps writes NaN as the sender's JSON did
        assert store.store_many([Message(inbox, message_id, payload, body, inline)]) == [True]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2b_integrations", *args],
        env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
        capture_output=True,
        text=True,
        check=False,
    )


def _listed(stdout: str) -> dict[str, str]:
    """Message id -> its line of ``quarantine list`` (log lines of Airflow's own start-up left out)."""
    return {line.split()[1]: line for line in stdout.splitlines() if line.startswith("billing")}


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _invoice(invoice_id: str, currency: str = "EUR", amount: Any = 100) -> dict[str, Any]:
    return {"invoice_id": invoice_id, "status": "paid", "amount_cents": amount, "currency": currency}


def test_poison_messages_between_valid_ones_are_quarantined_and_replayed_once(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = _deploy(tmp_path, monkeypatch, "poisonco", f"{PG}/{pg_db}")
    assert dag.test().state == "success"  # registers the DAG and its inbox; nothing to read yet
    _store(
        "poisonco",
        "billing",
        "events",
        [
            ("m1", _invoice("I1"), True),
            ("m2-nan", {"invoice_id": "I2", "amount_cents": float("nan")}, False),  # API cannot return it
            ("m3", _invoice("I3"), True),
            ("m4-gbp", _invoice("I4", currency="GBP"), True),  # the customer's transform raises on it
            ("m5-nokey", {"status": "paid", "amount_cents": 5, "currency": "EUR"}, True),  # no load key
            ("m6-huge", _invoice("I6", amount=2**70), True),  # beyond 64 bits
            ("m6-big", {**_invoice("I6", amount=2**40), "status": "s" * 21}, True),  # beyond VARCHAR(20)
            ("m7", _invoice("I7"), True),
        ],
    )
    run = dag.test()
    assert run.state == "success", _states(run)
    # The module's other tests load D- and X- invoices into the same table (any order): this one's are I-.
    assert pg_rows(pg_db, "SELECT id, count(*) FROM invoices WHERE id LIKE 'I%' GROUP BY id ORDER BY id") == [
        ("I1", 1),
        ("I3", 1),
        ("I7", 1),
    ]

    listed = _cli("quarantine", "list", "poisonco")
    assert listed.returncode == 0, listed.stderr
    lines = _listed(listed.stdout)
    assert sorted(lines) == ["m2-nan", "m4-gbp", "m5-nokey", "m6-big", "m6-huge"], listed.stdout
    assert (
        "step normalise" in lines["m2-nan"]
        and "cannot be returned by Airflow's Execution API" in lines["m2-nan"]
    )
    assert "step normalise" in lines["m4-gbp"] and "ValueError: unknown currency GBP" in lines["m4-gbp"]
    assert "step load, record" in lines["m5-nokey"] and "field 'id' is required" in lines["m5-nokey"]
    assert "field 'amount_cents'" in lines["m6-huge"] and "does not fit in 64 bits" in lines["m6-huge"]
    assert "step load, record" in lines["m6-big"] and "field 'status'" in lines["m6-big"]
    assert all(line.startswith("billing/events ") and " quarantined at " in line for line in lines.values())

    # The position moved past every message: the next run finds nothing new.
    idle = dag.test()
    assert idle.state == "success" and set(_states(idle).values()) == {"skipped"}

    # The customer starts billing in GBP; the operator replays the message that failed for it.
    dag = _deploy(tmp_path, monkeypatch, "poisonco", f"{PG}/{pg_db}", config={"currencies": "EUR,GBP"})
    replayed = _cli("quarantine", "replay", "poisonco", "billing", "events", "m4-gbp")
    assert replayed.returncode == 0, replayed.stderr
    assert any(
        line.startswith("m4-gbp: queued again as m4-gbp#replay-") for line in replayed.stdout.splitlines()
    )
    again = _cli("quarantine", "replay", "poisonco", "billing", "events", "m4-gbp")
    assert again.returncode == 0 and "already replayed as m4-gbp#replay-" in again.stdout, again.stdout
    assert dag.test().state == "success"
    assert pg_rows(
        pg_db,
        "SELECT id, currency, count(*) FROM invoices WHERE id LIKE 'I%' GROUP BY id, currency ORDER BY id",
    ) == [
        ("I1", "EUR", 1),
        ("I3", "EUR", 1),
        ("I4", "GBP", 1),
        ("I7", "EUR", 1),
    ]
    after = _cli("quarantine", "list", "poisonco", "billing", "events")
    assert "m4-gbp replayed as m4-gbp#replay-" in after.stdout, after.stdout
    assert "#replay-" not in after.stdout.split("m4-gbp replayed as")[0]  # the replay was not quarantined

    unknown = _cli("quarantine", "replay", "poisonco", "billing", "events", "m1")
    assert unknown.returncode == 1 and "not quarantined" in unknown.stderr


def test_an_unreachable_database_keeps_the_position_and_the_next_run_loads_everything_once_past_a_poison(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servers import free_port

    down = f"postgresql://postgres@127.0.0.1:{free_port()}/{pg_db}"  # nothing listens there
    dag = _deploy(tmp_path, monkeypatch, "downco", down)
    assert dag.test().state == "success"
    _store(
        "downco",
        "billing",
        "events",
        [
            ("d1", _invoice("D1"), True),
            ("d-gbp", _invoice("D9", currency="GBP"), True),
            ("d2", _invoice("D2"), True),
        ],
    )
    failed = dag.test()
    assert failed.state == "failed"
    load = next(ti for ti in failed.get_task_instances() if ti.task_id == "load")
    assert load.state == "failed" and load.try_number == 2  # retried: a transient failure
    # Nothing is quarantined by a run whose work did not commit: the next run sees the same messages.
    assert _listed(_cli("quarantine", "list", "downco").stdout) == {}

    monkeypatch.setenv("AIRFLOW_CONN_DOWNCO_DB", f"{PG}/{pg_db}")
    assert dag.test().state == "success"
    assert pg_rows(pg_db, "SELECT id, count(*) FROM invoices WHERE id LIKE 'D%' GROUP BY id ORDER BY id") == [
        ("D1", 1),
        ("D2", 1),
    ]
    listed = _cli("quarantine", "list", "downco")
    assert listed.returncode == 0 and list(_listed(listed.stdout)) == ["d-gbp"], listed.stdout


def test_one_malformed_payload_alone_or_in_a_batch_is_quarantined_never_a_null_key_row(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped billing_webhooks template; its table without a primary key, as a customer's table may
    be, so nothing but the load step stands between a record without an id and a NULL key row."""
    import psycopg2

    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE invoice_events (id VARCHAR(40), status VARCHAR(20), amount_cents BIGINT, currency VARCHAR(3))"
        )
    template = shipped_template("billing_webhooks")
    template["defaults"] = {"retries": 0}
    template["flows"]["invoice_events"]["steps"][1]["mode"] = "insert"
    dag = _deploy(tmp_path, monkeypatch, "nullco", f"{PG}/{pg_db}", template=template)
    assert dag.test().state == "success"

    malformed = {"status": "paid", "amount_cents": 1, "currency": "EUR"}  # no invoice_id
    _store("nullco", "billing_webhooks", "invoice_events", [("alone", malformed, True)])
    assert dag.test().state == "success"  # the transform fails on it alone: quarantined, not a failed step
    _store(
        "nullco",
        "billing_webhooks",
        "invoice_events",
        [("good", _invoice("N1"), True), ("bad", malformed, True)],
    )
    assert dag.test().state == "success"
    assert pg_rows(pg_db, "SELECT id FROM invoice_events") == [("N1",)]
    listed = _cli("quarantine", "list", "nullco", "billing_webhooks")
    lines = _listed(listed.stdout)
    assert sorted(lines) == ["alone", "bad"], listed.stdout
    assert "step normalise" in lines["alone"] and "lack field(s) ['id']" in lines["alone"]
    # In a batch the transform gets the column (the other message has it), so the load's record check
    # is what keeps the NULL key out.
    assert (
        "step load_invoices, record 2, field 'id': table invoice_events: field 'id' is required"
        in lines["bad"]
    )


def test_an_event_the_execution_api_cannot_return_is_skipped_and_its_messages_replayed_one_by_one(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nested 500 deep, a message is stored, but Airflow's Execution API cannot return the asset event
    holding it (its response model's recursion limit): every read of a range including that event fails,
    and the other message stored in the same event with it is unknown to the task. (The endpoints refuse
    such bodies; on a live stack the scheduler itself fails on a run consuming that event, so this runs
    the DAG with dag.test(), which reaches the tasks' reading path without the scheduler.)"""
    dag = _deploy(tmp_path, monkeypatch, "deepco", f"{PG}/{pg_db}")
    assert dag.test().state == "success"
    deep: Any = 1
    for _ in range(500):
        deep = {"a": deep}
    _store("deepco", "billing", "events", [("x1", _invoice("X1"), True)])
    # Our event store refuses such a payload (a second guard behind the endpoints), so the event is written
    # as Airflow's own asset-event API, or a deployment before that guard, could have: one event, two
    # messages, one of them too deep for the Execution API.
    import sqlalchemy as sa
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session

    from b2b_integrations.staging import WEBHOOK_KEY

    now = datetime.now(UTC).isoformat()
    together = [
        {"message_id": "x2", "received_at": now, "payload": _invoice("X2")},
        {"message_id": "x2-deep", "received_at": now, "payload": {**_invoice("X9"), "deep": deep}},
    ]
    with create_session() as session:
        asset = session.scalar(
            sa.select(AssetModel).where(AssetModel.uri == "b2b://deepco/billing/events/inbox")
        )
        asset_manager.register_asset_change(
            asset=asset, extra={WEBHOOK_KEY: together}, source_is_api=True, session=session
        )
    _store("deepco", "billing", "events", [("x3", _invoice("X3"), True)])

    run = dag.test()
    assert run.state == "success", _states(run)
    assert pg_rows(pg_db, "SELECT id, count(*) FROM invoices WHERE id LIKE 'X%' GROUP BY id ORDER BY id") == [
        ("X1", 1),
        ("X3", 1),
    ]
    (entry,) = _listed(_cli("quarantine", "list", "deepco").stdout).items()
    assert entry[0].startswith("event@") and "cannot be returned by Airflow's Execution API" in entry[1]
    idle = dag.test()
    assert idle.state == "success" and set(_states(idle).values()) == {"skipped"}

    replayed = _cli("quarantine", "replay", "deepco", "billing", "events", "--all")
    assert replayed.returncode == 0, replayed.stderr
    # The good message is queued again; the deep one is not (it would reach the scheduler this time).
    (outcome,) = [line for line in replayed.stdout.splitlines() if line.startswith(entry[0])]
    assert ": queued again as x2#replay-" in outcome
    assert "x2-deep not queued: nested deeper than 64 levels; it must be sent again, corrected" in outcome
    assert dag.test().state == "success"
    assert pg_rows(pg_db, "SELECT id, count(*) FROM invoices WHERE id LIKE 'X%' GROUP BY id ORDER BY id") == [
        ("X1", 1),
        ("X2", 1),
        ("X3", 1),
    ]
    listed = _listed(_cli("quarantine", "list", "deepco").stdout)
    assert list(listed) == [entry[0]] and f"{entry[0]} replayed as x2#replay-" in listed[entry[0]]


def test_a_scheduled_load_sets_bad_records_aside_in_its_transaction_and_loads_the_others(
    airflow_db: str, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No inbox, so no message to quarantine: the records go to b2b_quarantine with the loaded rows."""
    template = {
        "name": "orders",
        "connections": {"app_db": {"type": "postgres"}, "webhook_secret": {"type": "generic"}},
        "defaults": {"retries": 0},
        "flows": {
            "nightly": {
                "trigger": {"type": "manual"},
                "steps": [
                    {"id": "make", "kind": "transform", "callable": "poison_transforms.orders"},
                    {"id": "load", "kind": "load", "connection": "app_db", "table": "orders", "key": ["order_id"],
                     "create_table": True, "columns": {"order_id": "VARCHAR(10)", "qty": "INTEGER"}},
                ],
            }
        },
    }  # fmt: skip
    dag = _deploy(tmp_path, monkeypatch, "schedco", f"{PG}/{pg_db}", template=template)
    run = dag.test()
    assert run.state == "success", _states(run)
    assert pg_rows(pg_db, "SELECT order_id, qty FROM orders ORDER BY order_id") == [("O1", 1), ("O4", 4)]
    assert pg_rows(
        pg_db,
        "SELECT customer_id, flow, step_id, record_number, reasons, raw_record FROM b2b_quarantine "
        "WHERE customer_id = 'schedco' ORDER BY record_number",
    ) == [
        ("schedco", "nightly", "load", 2, "field 'order_id' is required", '{"order_id": null, "qty": 2}'),
        ("schedco", "nightly", "load", 3, "field 'qty': expected integer, got 'three'", '{"order_id": "O3", "qty": "three"}'),
    ]  # fmt: skip
