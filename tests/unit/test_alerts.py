"""Failure alerts, the pure parts: targets, the alert built from a callback context, rendering, redaction."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import Connection

from b2b_integrations.alerts import (
    MAX_ERROR_CHARS,
    AlertTargets,
    _retry_delay,
    alert_from_context,
    describe_error,
    email_message,
    failure_callback,
    operator_defaults,
    redact,
    slack_payload,
    slack_webhook_url,
)

BASE = "https://airflow.example.com/"


def _task_context(error: BaseException | None = None, **ti_fields: object) -> dict[str, object]:
    """What a task's on_failure_callback receives, reduced to what the alert reads."""
    ti = SimpleNamespace(
        dag_id="acme__crm_contacts__contacts",
        run_id="scheduled__2026-11-29T08:00:00+00:00",
        task_id="import_contacts",
        try_number=3,
        task=None,
        **ti_fields,
    )
    return {"ti": ti, "run_id": ti.run_id, "exception": error or RuntimeError("boom")}


# ------------------------------------------------------------------------------------------------ targets


def test_targets_from_a_customer_block() -> None:
    targets = AlertTargets.from_config(
        {"slack": "acme_slack", "email": ["ops@acme.example", "cto@acme.example"], "email_connection": "smtp"}
    )
    assert targets == AlertTargets("acme_slack", ("ops@acme.example", "cto@acme.example"), "smtp")
    assert AlertTargets.from_config({"email": "a@x.example, b@x.example"}).email_to == (
        "a@x.example",
        "b@x.example",
    )
    assert AlertTargets.from_config(None).empty


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"slak": "x"}, "customer acme: alerts: unknown key(s) slak; allowed: slack, email"),
        ({"email": "not-an-address"}, "customer acme: alerts.email: not an e-mail address: 'not-an-address'"),
        ({"email": [1, 2]}, "customer acme: alerts.email: expected an address or a list of addresses"),
        ({"slack": ""}, "customer acme: alerts.slack: expected a non-empty string"),
    ],
)
def test_a_malformed_block_is_refused_at_parse_time_naming_customer_and_key(
    config: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        failure_callback(config, customer_id="acme")
    assert str(caught.value).startswith(message)


def test_each_unset_target_falls_back_to_the_operators() -> None:
    operator = AlertTargets("ops_slack", ("oncall@ops.example",), "ops_smtp", "alerts@ops.example")
    customer = AlertTargets(email_to=("it@acme.example",))
    assert customer.or_defaults(operator) == AlertTargets(
        "ops_slack", ("it@acme.example",), "ops_smtp", "alerts@ops.example"
    )
    assert AlertTargets("acme_slack").or_defaults(AlertTargets()) == AlertTargets("acme_slack")


def test_operator_defaults_come_from_airflow_config_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    assert operator_defaults() == AlertTargets()
    monkeypatch.setenv("AIRFLOW__B2B_ALERTS__SLACK_CONN_ID", "ops_slack")
    monkeypatch.setenv("AIRFLOW__B2B_ALERTS__EMAIL_TO", "oncall@ops.example, data@ops.example")
    monkeypatch.setenv("AIRFLOW__B2B_ALERTS__EMAIL_CONN_ID", "ops_smtp")
    assert operator_defaults() == AlertTargets(
        "ops_slack", ("oncall@ops.example", "data@ops.example"), "ops_smtp"
    )


# ------------------------------------------------------------------------------------------ the alert


def test_a_task_failure_names_customer_flow_run_link_task_and_error() -> None:
    alert = alert_from_context(
        _task_context(ValueError("field 'email' of record 7 is not valid")), base_url=BASE
    )
    assert (alert.customer, alert.integration, alert.flow) == ("acme", "crm_contacts", "contacts")
    assert alert.run_id == "scheduled__2026-11-29T08:00:00+00:00"
    # The run id's ':' and '+' are escaped, so the link opens that run in the UI.
    assert alert.run_url == (
        "https://airflow.example.com/dags/acme__crm_contacts__contacts/runs/"
        "scheduled__2026-11-29T08%3A00%3A00%2B00%3A00"
    )
    assert alert.task_url == alert.run_url + "/tasks/import_contacts"
    assert alert.try_number == 3
    assert alert.error == "ValueError: field 'email' of record 7 is not valid"


def test_the_step_operators_own_names_win_over_the_dag_id() -> None:
    context = _task_context()
    context["task"] = SimpleNamespace(customer_id="acme", integration="crm_contacts", flow="contacts")
    context["ti"] = SimpleNamespace(dag_id="hand_written_dag", run_id="manual_1", task_id="t", try_number=1)
    alert = alert_from_context(context, base_url=BASE)
    assert (alert.customer, alert.integration, alert.flow, alert.dag_id) == (
        "acme",
        "crm_contacts",
        "contacts",
        "hand_written_dag",
    )
    named = alert_from_context(context, base_url=BASE, customer_id="globex", flow="orders")
    assert (named.customer, named.flow) == ("globex", "orders")


def test_a_dag_level_failure_has_the_reason_and_no_task() -> None:
    context = {
        "dag": SimpleNamespace(dag_id="globex__partner_orders_sftp__orders"),
        "run_id": "manual__1",
        "reason": "task_failure",
    }
    alert = alert_from_context(context, base_url=BASE)
    assert (alert.customer, alert.flow, alert.task_id, alert.task_url) == ("globex", "orders", None, None)
    assert alert.error == "task_failure"


def test_errors_lose_their_secrets_and_are_cut_to_a_readable_size() -> None:
    error = ConnectionError(
        "connect to postgresql://app:S3cr3t!pw@db:5432/app failed; password=hunter22 "
        "Authorization: Bearer eyJhbGciOi.secret.sig posting to https://hooks.slack.com/services/T0/B0/abc123 "
        '{"api_key": "k-123456"} client_secret: cs-99 the customer-specific-secret-value'
    )
    text = describe_error(error, secrets=["customer-specific-secret-value"])
    for secret in (
        "S3cr3t!pw",
        "hunter22",
        "eyJhbGciOi",
        "T0/B0/abc123",
        "k-123456",
        "cs-99",
        "specific-secret",
    ):
        assert secret not in text
    assert text.startswith(
        "ConnectionError: connect to postgresql://app:***@db:5432/app failed; password=***"
    )
    long = describe_error("x" * 5000)
    assert len(long) == MAX_ERROR_CHARS and long.endswith("…")


def test_a_secret_airflow_masks_is_masked_in_the_alert_too() -> None:
    from airflow.sdk.log import mask_secret

    mask_secret("masked-by-airflow-7781")
    assert redact("login failed with masked-by-airflow-7781") == "login failed with ***"


# ------------------------------------------------------------------------------------------ rendering


def test_slack_message_escapes_data_so_it_cannot_ping_or_link() -> None:
    alert = alert_from_context(
        _task_context(RuntimeError("<!channel> see <http://evil|here> & more")), base_url=BASE
    )
    payload = slack_payload(alert)
    assert "<!channel>" not in str(payload) and "<http://evil" not in str(payload)
    assert "&lt;!channel&gt; see &lt;http://evil|here&gt; &amp; more" in payload["text"]
    section = payload["blocks"][1]["text"]["text"]
    assert f"*Run:* <{alert.run_url}|scheduled__2026-11-29T08:00:00+00:00>" in section
    assert f"*Task:* <{alert.task_url}|import_contacts> (try 3)" in section
    assert payload["blocks"][0]["text"]["text"] == "Failed: acme / crm_contacts / contacts"


def test_email_is_escaped_html_with_the_links() -> None:
    alert = alert_from_context(_task_context(RuntimeError("<script>x</script>")), base_url=BASE)
    subject, body = email_message(alert)
    assert subject == "[b2b-integrations] Failed: acme / crm_contacts / contacts"
    assert "<script>" not in body and "&lt;script&gt;x&lt;/script&gt;" in body
    assert f'<a href="{alert.run_url}">scheduled__2026-11-29T08:00:00+00:00</a>' in body


# ------------------------------------------------------------------------------------------- sending rules


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        ({"password": "T00/B00/XXX"}, "https://hooks.slack.com/services/T00/B00/XXX"),
        ({"password": "https://hooks.slack.com/services/T1/B1/Y"}, "https://hooks.slack.com/services/T1/B1/Y"),
        ({"host": "http://127.0.0.1:8999/hooks/", "password": "/T/B/Z"}, "http://127.0.0.1:8999/hooks/T/B/Z"),
        ({"host": "relay.internal/hooks", "port": 8443, "password": "T/B/Z"}, "https://relay.internal:8443/hooks/T/B/Z"),
        ({"host": "relay.internal", "schema": "http", "password": "T/B/Z"}, "http://relay.internal/T/B/Z"),
    ],
)  # fmt: skip
def test_slack_webhook_url_is_read_as_the_slack_provider_reads_its_connection(
    conn: dict[str, object], url: str
) -> None:
    assert slack_webhook_url(Connection(conn_id="s", conn_type="slackwebhook", **conn)) == url  # type: ignore[arg-type]


def test_a_slack_connection_without_a_token_is_an_error() -> None:
    with pytest.raises(ValueError, match="no webhook URL or token"):
        slack_webhook_url(Connection(conn_id="s", conn_type="slackwebhook", host="hooks.slack.com"))


@pytest.mark.parametrize(
    ("status", "retry_after", "connect_failed", "delay"),
    [
        (None, None, True, 1.0),  # nothing reached Slack
        (429, "2", False, 2.0),  # rate limited: not posted, wait as told
        (429, "3600", False, 5.0),  # ... but never long inside a callback
        (503, None, False, 1.0),
        (None, None, False, None),  # a timeout: it may have posted, a retry could post twice
        (400, None, False, None),  # a bad payload stays bad
        (404, None, False, None),  # a revoked webhook stays revoked
    ],
)
def test_slack_is_retried_once_only_when_the_message_was_certainly_not_posted(
    status: int | None, retry_after: str | None, connect_failed: bool, delay: float | None
) -> None:
    assert _retry_delay(status, retry_after, connect_failed) == delay
