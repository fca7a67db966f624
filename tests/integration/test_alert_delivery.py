"""Failure alerts against real servers: a Slack stand-in (tests/http_sink.py, uvicorn in a subprocess), a real
SMTP server (aiosmtpd, tests/smtp_server.py), and, end to end, a real Airflow whose failing task and DAG
call the callback from the task runner and from the dag-processor."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_stack import AIRFLOW, start_airflow_stack
from b2b_integrations.alerts import AlertDeliveryError, failure_callback
from http_sink import HttpSink
from smtp_server import SmtpServer

BASE_URL = "https://airflow.ops.example/"
DB_PASSWORD = "Db-Pw-Leak-8812"


def _slack_conn(sink: HttpSink) -> str:
    # As a Slack provider connection: endpoint in host, the webhook's secret path in the password.
    return json.dumps(
        {"conn_type": "slackwebhook", "host": f"{sink.url}/hooks", "password": sink.webhook_path}
    )


@pytest.fixture
def targets(sink: HttpSink, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    sink.reset()
    smtp.clear()
    monkeypatch.setenv("AIRFLOW_CONN_ALERT_SLACK", _slack_conn(sink))
    monkeypatch.setenv("AIRFLOW_CONN_ALERT_SMTP", smtp.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)


def _context(error: BaseException) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="acme__crm_contacts__contacts",
        run_id="manual__2026-11-29T09:00:00+00:00",
        task_id="import_contacts",
        try_number=1,
    )
    return {"ti": ti, "run_id": ti.run_id, "exception": error}


def _posted(sink: HttpSink) -> list[dict[str, Any]]:
    return [r["json"] for r in sink.requests("webhook") if r.get("status") == 200]


@pytest.mark.usefixtures("targets")
def test_the_customer_gets_slack_and_email_with_run_link_task_and_error_and_no_secret(
    sink: HttpSink, smtp: SmtpServer
) -> None:
    notify = failure_callback(
        {"slack": "alert_slack", "email": ["it@acme.example"], "email_connection": "alert_smtp"}
    )
    notify(_context(RuntimeError(f"cannot load: postgresql://app:{DB_PASSWORD}@db/app refused")))

    [slack] = _posted(sink)
    run_link = (
        "https://airflow.ops.example/dags/acme__crm_contacts__contacts/runs/"
        "manual__2026-11-29T09%3A00%3A00%2B00%3A00"
    )
    section = slack["blocks"][1]["text"]["text"]
    assert "*Customer:* acme" in section and "*Integration / flow:* crm_contacts / contacts" in section
    assert f"<{run_link}|manual__2026-11-29T09:00:00+00:00>" in section
    assert f"<{run_link}/tasks/import_contacts|import_contacts> (try 1)" in section
    assert "RuntimeError: cannot load: postgresql://app:***@db/app refused" in slack["text"]

    [mail] = smtp.messages
    assert mail.rcpt_tos == ["it@acme.example"] and mail.mail_from == "reports@b2b.example"
    assert mail.message["Subject"] == "[b2b-integrations] Failed: acme / crm_contacts / contacts"
    body = mail.message.get_body().get_content()
    assert f'<a href="{run_link}">' in body and "postgresql://app:***@db/app" in body

    everything = json.dumps(sink.requests()) + mail.raw.decode(errors="replace")
    for secret in (DB_PASSWORD, smtp.password):
        assert secret not in everything


@pytest.mark.usefixtures("targets")
def test_targets_a_customer_leaves_out_go_to_the_operators_defaults(
    sink: HttpSink, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__B2B_ALERTS__SLACK_CONN_ID", "alert_slack")
    monkeypatch.setenv("AIRFLOW__B2B_ALERTS__EMAIL_TO", "oncall@ops.example")
    monkeypatch.setenv("AIRFLOW__B2B_ALERTS__EMAIL_CONN_ID", "alert_smtp")
    monkeypatch.setenv("AIRFLOW__B2B_ALERTS__EMAIL_FROM", "b2b-alerts@ops.example")

    failure_callback(None)(_context(ValueError("bad record 3")))  # no customer targets: all the operator's
    failure_callback({"email": "it@acme.example"})(_context(ValueError("bad record 4")))

    assert [p["text"].rsplit(": ", 1)[-1] for p in _posted(sink)] == ["bad record 3", "bad record 4"]
    assert [(m.mail_from, m.rcpt_tos) for m in smtp.messages] == [
        ("b2b-alerts@ops.example", ["oncall@ops.example"]),
        ("b2b-alerts@ops.example", ["it@acme.example"]),
    ]


@pytest.mark.usefixtures("targets")
def test_a_rate_limited_slack_gets_one_retry_and_one_message(sink: HttpSink) -> None:
    sink.fail_next(1, status=429, path_prefix="/hooks/")
    failure_callback({"slack": "alert_slack"})(_context(RuntimeError("x")))
    assert [r["status"] for r in sink.requests()] == [429, 200]
    assert len(_posted(sink)) == 1


@pytest.mark.usefixtures("targets")
def test_a_failing_target_does_not_stop_the_other_and_is_named_without_its_secret(
    sink: HttpSink, smtp: SmtpServer
) -> None:
    sink.fail_next(2, status=500, path_prefix="/hooks/")
    notify = failure_callback(
        {"slack": "alert_slack", "email": ["it@acme.example"], "email_connection": "alert_smtp"}
    )
    with pytest.raises(AlertDeliveryError) as caught:
        notify(_context(RuntimeError("x")))
    message = str(caught.value)
    assert message.startswith(
        "failure alert for customer acme, integration crm_contacts, flow contacts, "
        "run manual__2026-11-29T09:00:00+00:00: slack (connection alert_slack): "
    )
    assert "answered HTTP 500" in message and sink.webhook_path not in message
    assert [r["status"] for r in sink.requests()] == [500, 500]  # one retry, then given up
    assert len(smtp.messages) == 1  # the e-mail went out all the same


@pytest.mark.usefixtures("targets")
def test_a_refused_email_is_reported_and_slack_still_posted(sink: HttpSink, smtp: SmtpServer) -> None:
    smtp.refuse_next(1, "554 5.7.1 Rejected by policy")
    notify = failure_callback(
        {"slack": "alert_slack", "email": ["it@acme.example"], "email_connection": "alert_smtp"}
    )
    with pytest.raises(AlertDeliveryError, match=r"email it@acme\.example \(connection alert_smtp\): .*554"):
        notify(_context(RuntimeError("x")))
    assert len(_posted(sink)) == 1 and smtp.messages == []


# ------------------------------------------------------------------------------------ in a real Airflow

DAG_FILE = textwrap.dedent(
    """
    from datetime import datetime

    from airflow.sdk import DAG, task

    from b2b_integrations.alerts import failure_callback

    ALERTS = {"slack": "alert_slack", "email": ["it@alertco.example"], "email_connection": "alert_smtp"}

    with DAG(
        "alertco__crm_contacts__contacts",
        schedule=None,
        start_date=datetime(2025, 1, 1),
        default_args={"retries": 0, "on_failure_callback": failure_callback(ALERTS)},
        on_failure_callback=failure_callback(ALERTS),
    ):

        @task
        def import_contacts() -> None:
            raise RuntimeError("CRM said no: postgresql://app:DB_PASSWORD@db/app")

        import_contacts()
    """
).replace("DB_PASSWORD", DB_PASSWORD)


@pytest.mark.airflow_stack
def test_a_failing_task_in_a_real_airflow_alerts_from_the_task_and_from_the_dag(
    tmp_path: Path, sink: HttpSink, smtp: SmtpServer
) -> None:
    sink.reset()
    smtp.clear()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "alerting.py").write_text(DAG_FILE, encoding="utf-8")
    (tmp_path / "include").mkdir()
    stack = start_airflow_stack(
        tmp_path / "include",
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__API__BASE_URL": BASE_URL,
            "AIRFLOW_CONN_ALERT_SLACK": _slack_conn(sink),
            "AIRFLOW_CONN_ALERT_SMTP": smtp.airflow_conn_json(),
        },
    )
    try:
        dag_id = "alertco__crm_contacts__contacts"
        stack.wait_for(
            "the DAG", lambda: stack.sql(f"SELECT 1 FROM serialized_dag WHERE dag_id = '{dag_id}'")
        )
        trigger = subprocess.run(
            [AIRFLOW, "dags", "trigger", dag_id, "--run-id", "manual_alert"],
            env=stack.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert trigger.returncode == 0, trigger.stderr[-2000:]
        # One alert from the task runner (with the exception), one from the dag-processor (the run's reason).
        stack.wait_for(
            "two Slack alerts", lambda: len(_posted(sink)) == 2 and len(smtp.messages) == 2, timeout=180
        )
    finally:
        stack.stop()
    texts = sorted(p["text"] for p in _posted(sink))
    assert texts == [
        "Failed: alertco / crm_contacts / contacts: RuntimeError: CRM said no: postgresql://app:***@db/app",
        "Failed: alertco / crm_contacts / contacts: task_failure",
    ]
    for posted in _posted(sink):
        section = posted["blocks"][1]["text"]["text"]
        assert f"<{BASE_URL}dags/{dag_id}/runs/manual_alert/tasks/import_contacts|import_contacts>" in section
    assert {tuple(m.rcpt_tos) for m in smtp.messages} == {("it@alertco.example",)}
    assert DB_PASSWORD not in json.dumps(sink.requests()) + "".join(m.raw.decode() for m in smtp.messages)
