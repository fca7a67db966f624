"""The deliver step's sms target against the demo CRM's Twilio-compatible SMS API (a real HTTP server), with
the delivery ledger in PostgreSQL: the text arrives filled in and fitted, once; refusals name the target and
never the auth token."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import AirflowFailException

from b2b_integrations.operators.deliver import DeliverOperator
from crm_server import CrmServer
from helpers import PG
from helpers import pg_rows as rows

SID = "AC" + "d3m0" * 8  # the stand-in's account (include/demo/crm_app.py)
TOKEN = "demo-sms-token"
SMS = {"type": "sms", "connection": "sms_api", "to": "+45 12 34 56 78", "sender": "+4598765432"}


@pytest.fixture
def outbox(crm: CrmServer, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    host, port = crm.url.removeprefix("http://").split(":")
    api = {"conn_type": "http", "host": f"http://{host}:{port}/sms", "login": SID, "password": TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_API", json.dumps(api))
    monkeypatch.setenv("AIRFLOW_CONN_SMS_BAD", json.dumps(api | {"password": "Wr0ng-sms-Token"}))
    monkeypatch.setenv("AIRFLOW_CONN_SMS_DB", f"{PG}/{pg_db}")
    httpx.delete(f"{crm.url}/admin/sms").raise_for_status()
    yield f"{crm.url}/admin/sms"


def report(folder: Path, period: str) -> dict[str, Any]:
    content = b"%PDF-1.7 report"
    path = folder / "invoices.pdf"
    path.write_bytes(content)
    return {
        "file": str(path), "name": "invoices-2025-01.pdf", "format": "pdf", "rows": 12, "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(), "report": "invoices", "period": period,
    }  # fmt: skip


def deliver(targets: list[dict[str, Any]], folder: Path, period: str = "2025-01-31") -> dict[str, Any]:
    operator = DeliverOperator(
        task_id="notify", customer_id="acme", integration="reports", flow="monthly", db_conn_id="sms_db",
        targets=targets, report=report(folder, period),
    )  # fmt: skip
    result: dict[str, Any] = operator.execute({})  # type: ignore[arg-type]
    return result


def test_the_notice_arrives_once_with_its_placeholders_filled(
    outbox: str, tmp_path: Path, pg_db: str
) -> None:
    deliver([SMS], tmp_path)
    deliver([SMS], tmp_path)  # the same period again: the ledger knows it was sent
    (message,) = httpx.get(outbox).json()
    assert (message["to"], message["from"]) == ("+4512345678", "+4598765432")
    assert message["body"] == "invoices for 2025-01-31 is ready: invoices-2025-01.pdf (12 rows)"
    # The module's other tests deliver other periods into the same ledger (in any order): this one's row.
    (receipt,) = rows(
        pg_db, "SELECT receipt FROM b2b_deliveries WHERE target = 'sms' AND period = '2025-01-31'"
    )
    assert json.loads(receipt[0]) | {"message_sid": None} == {
        "message_sid": None,
        "status": "queued",
        "to": "+45******78",
        "segments": 1,
        "encoding": "GSM-7",
        "truncated": False,
    }


def test_a_long_text_is_cut_to_max_segments_or_refused(outbox: str, tmp_path: Path) -> None:
    long = {**SMS, "text": "{report}: " + "all invoices are attached and summed up. " * 20, "max_segments": 2}
    deliver([long], tmp_path, "2025-02-28")
    (message,) = httpx.get(outbox).json()
    assert message["body"].startswith("invoices: all invoices") and message["body"].endswith("...")
    assert 160 < len(message["body"]) <= 306  # two GSM-7 segments

    with pytest.raises(AirflowFailException, match="needs 6 SMS segments, more than max_segments \\(2\\)"):
        deliver([{**long, "too_long": "refuse"}], tmp_path, "2025-03-31")
    assert len(httpx.get(outbox).json()) == 1


def test_refused_credentials_fail_at_once_with_the_apis_reason_and_never_the_token(
    outbox: str, tmp_path: Path, pg_db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AirflowFailException) as error:
        deliver([{**SMS, "connection": "sms_bad"}], tmp_path, "2025-04-30")
    text = str(error.value)
    assert "sms: the SMS API answered HTTP 401: code 20003: Authenticate (retrying cannot help" in text
    recorded = " ".join(str(r) for r in rows(pg_db, "SELECT last_error FROM b2b_deliveries"))
    for place in (text, recorded, capfd.readouterr().out):
        assert "Wr0ng-sms-Token" not in place
    assert httpx.get(outbox).json() == []


def test_a_failure_alert_texts_every_number_and_names_a_refused_one_masked(
    outbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from b2b_integrations.alerts import AlertDeliveryError, failure_callback

    ti = SimpleNamespace(
        dag_id="acme__reports__monthly", run_id="scheduled__2025-02-01", task_id="render", try_number=2
    )
    context = {"ti": ti, "run_id": ti.run_id, "exception": RuntimeError("database said no " + "x" * 400)}
    notify = failure_callback(
        {"sms": ["+45 12 34 56 78", "+4411122233"], "sms_connection": "sms_api", "sms_from": "+4598765432"},
        customer_id="acme", integration="reports", flow="monthly",
    )  # fmt: skip
    notify.notify(context)  # type: ignore[arg-type]
    sent = httpx.get(outbox).json()
    assert [m["to"] for m in sent] == ["+4512345678", "+4411122233"]
    body = sent[0]["body"]
    assert body.startswith("B2B alert: acme reports/monthly task render failed: ")
    assert "database said no" in body and body.endswith("...") and len(body) <= 306  # two segments

    # The operator's default sender number is used when the customer names none; a refused login is
    # reported per number (masked), never with the token.
    monkeypatch.setenv("AIRFLOW__B2B_ALERTS__SMS_FROM", "+4598765432")
    refused = failure_callback({"sms": "+4512345678", "sms_connection": "sms_bad"}, customer_id="acme")
    with pytest.raises(AlertDeliveryError) as error:
        refused.notify(context)  # type: ignore[arg-type]
    assert "+45******78: the SMS API answered HTTP 401: code 20003: Authenticate" in str(error.value)
    assert "Wr0ng-sms-Token" not in str(error.value)
    assert len(httpx.get(outbox).json()) == 2


def test_alert_phone_numbers_are_checked_at_their_key() -> None:
    from b2b_integrations.alerts import AlertTargets

    with pytest.raises(
        ValueError, match=r"customer acme: alerts\.sms: '12345' is not an E\.164 phone number"
    ):
        AlertTargets.from_config({"sms": ["12345"]}, "customer acme: alerts")
