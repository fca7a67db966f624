"""A monitor alert as a Slack message, an e-mail, a text message and a signed webhook, and the senders.

Slack, e-mail and SMS reuse the failure alerts' plumbing (``alerts.py``: webhook URL, post with its one
safe retry, escaping, the smtp provider's hook, the Twilio-compatible sender with masked numbers). The webhook to the SaaS backend is signed with Standard
Webhooks (``webhooks.signatures.sign_standard``, as the event export signs), ``webhook-id`` being a hash of
the ledger key, so it is the same on every attempt and the receiver can drop a repeat.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from b2b_integrations.alerts import AlertDeliveryError, AlertTargets
from b2b_integrations.monitors.rules import Alert

WEBHOOK_TIMEOUT_SECONDS = 10.0
TITLES = {
    "overdue": "Overdue",
    "duration_exceeded": "Running too long",
    "failures": "Failing",
    "deactivation_warning": "Will be deactivated",
    "deactivated": "Deactivated",
    "recovered": "Recovered",
}


def alert_id(alert: Alert) -> str:
    key = "\x1f".join((alert.customer, alert.integration, alert.flow, alert.kind, alert.episode))
    return "mon_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def targets_of(targets: AlertTargets, webhook: bool) -> list[str]:
    """The ledger's target names for an instance's Slack, e-mail and SMS targets and the backend's webhook
    (the failure alerts' targets and defaults, so a customer set up for one gets both)."""
    found = []
    if targets.slack_conn_id:
        found.append(f"slack:{targets.slack_conn_id}")
    if targets.email_to:
        found.append(f"email:{targets.email_conn_id or 'smtp_default'}:{','.join(targets.email_to)}")
    if targets.sms_to:
        found.append(
            f"sms:{targets.sms_conn_id or 'sms_default'}:{targets.sms_from or ''}:{','.join(targets.sms_to)}"
        )
    if webhook:
        found.append("webhook")
    return found


def title(alert: Alert) -> str:
    return f"{TITLES.get(alert.kind, alert.kind)}: {alert.customer} / {alert.integration} / {alert.flow}"


def dag_url(base_url: str, alert: Alert) -> str:
    url = f"{base_url.rstrip('/')}/dags/{quote(alert.dag_id, safe='')}"
    return f"{url}/runs/{quote(alert.run_id, safe='')}" if alert.run_id else url


def webhook_body(alert: Alert, observed_at: datetime, base_url: str) -> dict[str, Any]:
    return {
        "type": f"integration.monitor.{alert.kind}",
        "timestamp": observed_at.isoformat(),
        "data": {
            "id": alert_id(alert),
            "kind": alert.kind,
            "severity": alert.severity,
            "customer": alert.customer,
            "integration": alert.integration,
            "flow": alert.flow,
            "message": f"{alert.integration} / {alert.flow} {alert.message}",
            "run_id": alert.run_id,
            "episode": alert.episode,
            "details": alert.details,
            "url": dag_url(base_url, alert),
        },
    }


def slack_payload(alert: Alert, base_url: str) -> dict[str, Any]:
    from b2b_integrations.alerts import _slack_escape as e

    head = title(alert)
    link = f"<{dag_url(base_url, alert)}|{e(alert.run_id or alert.dag_id)}>"
    return {
        "text": e(f"{head}: {alert.message}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{e(alert.flow)} {e(alert.message)}\n{link}"},
            },
        ],
    }


def email_message(alert: Alert, base_url: str) -> tuple[str, str]:
    h = html.escape
    subject = f"[b2b-integrations] {title(alert)}".replace("\n", " ").replace("\r", " ")
    url = dag_url(base_url, alert)
    body = (
        f"<p>{h(alert.customer)} / {h(alert.integration)} / {h(alert.flow)} {h(alert.message)}.</p>"
        f'<p><a href="{h(url)}">{h(alert.run_id or alert.dag_id)}</a></p>'
    )
    return subject, body


def sms_text(alert: Alert) -> str:
    """The alert as a text message of at most two segments (no link: a run URL is long and internal)."""
    from b2b_integrations.alerts import SMS_MAX_SEGMENTS
    from b2b_integrations.delivery.sms_text import fit

    return fit(f"B2B monitor: {title(alert)}: {alert.message}", SMS_MAX_SEGMENTS)[0]


def send_sms(conn_id: str, to: Sequence[str], sender: str | None, alert: Alert) -> None:
    from b2b_integrations.alerts import send_text

    send_text(conn_id, to, sender, sms_text(alert))


def send_webhook(conn_id: str, endpoint: str, alert: Alert, observed_at: datetime, base_url: str) -> None:
    """POST the alert, signed; one attempt (the ledger retries at the next evaluation).

    :raises AlertDeliveryError: with the host and status only, never the secret.
    """
    import httpx
    from airflow.providers.http.hooks.http import HttpHook

    from b2b_integrations.webhooks.signatures import sign_standard

    hook = HttpHook(method="POST", http_conn_id=conn_id)
    hook.get_conn()
    secret = hook.get_connection(conn_id).password
    if not secret:
        raise AlertDeliveryError(
            f"connection {conn_id!r} has no password: the webhook signing secret goes there"
        )
    url = hook.base_url.rstrip("/") + ("/" + endpoint.lstrip("/") if endpoint else "")
    body = json.dumps(webhook_body(alert, observed_at, base_url), separators=(",", ":"), default=str).encode()
    headers = sign_standard(secret, alert_id(alert), int(time.time()), body)
    headers["content-type"] = "application/json"
    try:
        response = httpx.post(
            url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS, trust_env=False
        )
    except httpx.HTTPError as e:
        raise AlertDeliveryError(f"{type(e).__name__} calling the monitors webhook") from None
    if not response.is_success:
        raise AlertDeliveryError(f"the monitors webhook answered HTTP {response.status_code}")


def send_slack(conn_id: str, alert: Alert, base_url: str) -> None:
    from airflow.sdk import BaseHook

    from b2b_integrations.alerts import post_to_slack, slack_webhook_url

    post_to_slack(slack_webhook_url(BaseHook.get_connection(conn_id)), slack_payload(alert, base_url))


def send_email(conn_id: str, to: Sequence[str], alert: Alert, base_url: str, email_from: str | None) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from b2b_integrations.alerts import DEFAULT_EMAIL_FROM

    subject, body = email_message(alert, base_url)
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        sender = email_from or hook.from_email or DEFAULT_EMAIL_FROM
        hook.send_email_smtp(to=list(to), subject=subject, html_content=body, from_email=sender)
