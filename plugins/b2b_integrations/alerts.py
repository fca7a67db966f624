"""Failure alerts per customer: an on-failure callback that tells the customer's (or the operator's) Slack
channel and mailbox which run failed, for whom, where to look, and why, without ever carrying a secret.

Where alerts go, per customer (the ``alerts:`` block of a customer file)::

    alerts:
      slack: acme_slack                  # a Slack incoming-webhook connection (conn type slackwebhook)
      email: [ops@acme.example]          # recipients
      email_connection: acme_smtp        # smtp connection (else the operator's)
      sms: ["+4512345678"]               # E.164 numbers, texted through a Twilio-compatible API
      sms_connection: acme_sms           # account SID as login, auth token as password (else the operator's)
      sms_from: "+4598765432"            # the sending number (else the operator's)

Each target a customer does not set falls back to the operator's default, read from Airflow config when
the alert is sent (so a change needs no restart and no re-parse)::

    [b2b_alerts]                         # or AIRFLOW__B2B_ALERTS__SLACK_CONN_ID=... etc.
    slack_conn_id = ops_slack
    email_to = oncall@example.com, data@example.com
    email_conn_id = smtp_default
    email_from = b2b-alerts@example.com
    sms_to = +4512345678
    sms_conn_id = ops_sms
    sms_from = +4598765432

The run link uses ``[api] base_url``. Usage: ``on_failure_callback=failure_callback(customer.alerts)`` on
the tasks (``default_args``) or on the DAG; the callback is an Airflow ``BaseNotifier``.

Pure parts (targets, the alert built from a context, Slack and e-mail rendering, redaction) are separate
from the two senders, so each rule is unit-testable without a server.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseNotifier

from b2b_integrations.config.alerts import AlertOptions, email_addresses, phone_numbers
from b2b_integrations.config.options import validated
from b2b_integrations.errors import B2BError

if TYPE_CHECKING:
    from airflow.sdk import Connection, Context

CONFIG_SECTION = "b2b_alerts"
SMS_MAX_SEGMENTS = 2
SMS_TIMEOUT_SECONDS = 10.0
SLACK_DEFAULT_ENDPOINT = "https://hooks.slack.com/services"
MAX_ERROR_CHARS = 1500
SLACK_TIMEOUT_SECONDS = 10.0
SLACK_ATTEMPTS = 2  # one retry, only when the first attempt certainly did not post (see _retry_delay)
MAX_RETRY_AFTER_SECONDS = 5.0
DEFAULT_EMAIL_FROM = "b2b-integrations@localhost"
REDACTED = "***"


class AlertDeliveryError(B2BError):
    """One or more alert targets could not be reached; the message names them, never their secrets."""


# ------------------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class AlertTargets:
    """Where one failure alert goes. Connection ids only: credentials stay in Airflow connections."""

    slack_conn_id: str | None = None
    email_to: tuple[str, ...] = ()
    email_conn_id: str | None = None
    email_from: str | None = None
    sms_to: tuple[str, ...] = ()
    sms_conn_id: str | None = None
    sms_from: str | None = None

    @classmethod
    def from_config(cls, alert_config: Mapping[str, Any] | None, where: str = "alerts") -> AlertTargets:
        """A customer's ``alerts:`` block (keys ``slack``, ``email``, ``email_connection``, ``email_from``).

        :raises ValueError: naming ``where`` and the offending key, for unknown keys or wrong types.
        """
        options = validated(AlertOptions, alert_config or {}, where)
        return cls(
            slack_conn_id=options.slack,
            email_to=tuple(options.email or ()),
            email_conn_id=options.email_connection,
            email_from=options.email_from,
            sms_to=tuple(options.sms or ()),
            sms_conn_id=options.sms_connection,
            sms_from=options.sms_from,
        )

    def or_defaults(self, defaults: AlertTargets) -> AlertTargets:
        """Each target this one leaves unset taken from ``defaults`` (the operator's)."""
        return AlertTargets(
            slack_conn_id=self.slack_conn_id or defaults.slack_conn_id,
            email_to=self.email_to or defaults.email_to,
            email_conn_id=self.email_conn_id or defaults.email_conn_id,
            email_from=self.email_from or defaults.email_from,
            sms_to=self.sms_to or defaults.sms_to,
            sms_conn_id=self.sms_conn_id or defaults.sms_conn_id,
            sms_from=self.sms_from or defaults.sms_from,
        )

    @property
    def empty(self) -> bool:
        return not self.slack_conn_id and not self.email_to and not self.sms_to


def _addresses(value: Any, where: str) -> tuple[str, ...]:
    try:
        return tuple(email_addresses(value) or ())
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _phones(value: Any, where: str) -> tuple[str, ...]:
    try:
        return tuple(phone_numbers(value) or ())
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def operator_defaults() -> AlertTargets:
    """The operator's targets from Airflow config ``[b2b_alerts]`` (env ``AIRFLOW__B2B_ALERTS__*``)."""
    from airflow.sdk import conf

    def get(key: str) -> str | None:
        value = conf.get(CONFIG_SECTION, key, fallback=None)
        return (value.strip() or None) if isinstance(value, str) else None

    return AlertTargets(
        slack_conn_id=get("slack_conn_id"),
        email_to=_addresses(get("email_to"), f"[{CONFIG_SECTION}] email_to"),
        email_conn_id=get("email_conn_id"),
        email_from=get("email_from"),
        sms_to=_phones(get("sms_to"), f"[{CONFIG_SECTION}] sms_to"),
        sms_conn_id=get("sms_conn_id"),
        sms_from=(_phones(get("sms_from"), f"[{CONFIG_SECTION}] sms_from") or (None,))[0],
    )


# ------------------------------------------------------------------------------------------ the alert


@dataclass(frozen=True)
class FailureAlert:
    """Everything an alert says, taken from the callback's context."""

    customer: str
    integration: str
    flow: str
    dag_id: str
    run_id: str
    run_url: str
    task_id: str | None = None
    task_url: str | None = None
    try_number: int | None = None
    error: str = "unknown error"

    @property
    def where(self) -> str:
        return f"customer {self.customer}, integration {self.integration}, flow {self.flow}"


def alert_from_context(
    context: Mapping[str, Any],
    *,
    base_url: str,
    customer_id: str | None = None,
    integration: str | None = None,
    flow: str | None = None,
    secrets: Sequence[str] = (),
) -> FailureAlert:
    """Build the alert from a task callback's context (``ti``, ``exception``) or a DAG callback's
    (``dag``, ``run_id``, ``reason``, and ``ti`` for the last task when Airflow knows it).

    Who the run is for comes from the arguments, else the step operator's own fields, else the DAG id
    (``<customer>__<integration>__<flow>``).
    """
    ti = context.get("ti")
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    task = context.get("task") or getattr(ti, "task", None)
    dag_id = str(
        getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", "")
    )
    run_id = str(context.get("run_id") or getattr(ti, "run_id", None) or getattr(dag_run, "run_id", ""))
    parts = dag_id.split("__")
    named = parts if len(parts) == 3 else ["?", "?", dag_id or "?"]
    task_id = getattr(ti, "task_id", None)
    run_url = f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    error = context.get("exception") or context.get("reason") or "unknown error"
    return FailureAlert(
        customer=customer_id or getattr(task, "customer_id", None) or named[0],
        integration=integration or getattr(task, "integration", None) or named[1],
        flow=flow or getattr(task, "flow", None) or named[2],
        dag_id=dag_id,
        run_id=run_id,
        run_url=run_url,
        task_id=task_id,
        task_url=f"{run_url}/tasks/{quote(task_id, safe='')}" if task_id else None,
        try_number=getattr(ti, "try_number", None),
        error=describe_error(error, secrets),
    )


def describe_error(error: BaseException | str, secrets: Sequence[str] = ()) -> str:
    """``ExceptionType: message`` with secrets redacted, cut to ``MAX_ERROR_CHARS``."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = redact(text, secrets)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # user:password@ in any URL or DSN
    (re.compile(r"(?P<k>[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+(?=@)", re.I), rf"\g<k>{REDACTED}"),
    # Slack incoming-webhook paths and tokens (the path is the credential)
    (re.compile(r"(?P<k>hooks\.slack\.com/(?:services|workflows|triggers)/)\S+", re.I), rf"\g<k>{REDACTED}"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+"), REDACTED),
    # Authorization headers
    (re.compile(r"(?P<k>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]{8,}", re.I), rf"\g<k>{REDACTED}"),
    # key=value / key: value / "key": "value" for secret-looking keys
    (
        re.compile(
            r"(?P<k>[\"']?\b[\w\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
            r"private[_-]?key|signature|credentials?)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&}]+",
            re.I,
        ),
        rf"\g<k>{REDACTED}",
    ),
)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with credentials removed: the given secrets, anything Airflow's secrets masker knows
    (every connection password a task fetched), URL passwords, Slack hook paths, tokens, ``key=value``
    pairs whose key names a secret."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _airflow_masked(text)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _airflow_masked(text: str) -> str:
    try:
        # Not in airflow.sdk's public names, but it is the masker the task logs go through.
        from airflow.sdk.log import redact as airflow_redact
    except ImportError:  # pragma: no cover - a future SDK without it: the patterns still apply
        return text
    redacted = airflow_redact(text)
    return redacted if isinstance(redacted, str) else text


# ------------------------------------------------------------------------------------------ rendering


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reads <...> as links and mentions (<!channel>): data must never be able to ping people.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: FailureAlert) -> dict[str, Any]:
    """The incoming-webhook JSON: a plain ``text`` (notifications) and blocks (the message)."""
    e = _slack_escape
    title = f"Failed: {alert.customer} / {alert.integration} / {alert.flow}"
    lines = [
        f"*Customer:* {e(alert.customer)}",
        f"*Integration / flow:* {e(alert.integration)} / {e(alert.flow)}",
        f"*Run:* <{alert.run_url}|{e(alert.run_id)}>",
    ]
    if alert.task_id:
        attempt = f" (try {alert.try_number})" if alert.try_number else ""
        lines.append(f"*Task:* <{alert.task_url}|{e(alert.task_id)}>{attempt}")
    return {
        "text": e(f"{title}: {alert.error}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"```{e(alert.error)}```"}},
        ],
    }


def email_message(alert: FailureAlert) -> tuple[str, str]:
    """(subject, HTML body)."""
    h = html.escape
    subject = f"[b2b-integrations] Failed: {alert.customer} / {alert.integration} / {alert.flow}"
    rows = [
        ("Customer", h(alert.customer)),
        ("Integration", h(alert.integration)),
        ("Flow", h(alert.flow)),
        ("DAG", h(alert.dag_id)),
        ("Run", f'<a href="{h(alert.run_url)}">{h(alert.run_id)}</a>'),
    ]
    if alert.task_id and alert.task_url:
        attempt = f" (try {alert.try_number})" if alert.try_number else ""
        rows.append(("Task", f'<a href="{h(alert.task_url)}">{h(alert.task_id)}</a>{attempt}'))
    table = "".join(f"<tr><th align='left'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    body = f"<p>A run failed.</p><table>{table}</table><pre>{h(alert.error)}</pre>"
    return subject.replace("\n", " ").replace("\r", " "), body


# ------------------------------------------------------------------------------------------- sending


def sms_text(alert: FailureAlert) -> str:
    """The alert as a text message of at most two segments: who, which task, and the error's start."""
    from b2b_integrations.delivery.sms_text import fit

    task = f" task {alert.task_id}" if alert.task_id else ""
    text = f"B2B alert: {alert.customer} {alert.integration}/{alert.flow}{task} failed: {alert.error}"
    return fit(text, SMS_MAX_SEGMENTS)[0]


def send_sms(conn_id: str, to: Sequence[str], sender: str | None, alert: FailureAlert) -> None:
    """Text the failure alert to every number (see ``send_text``)."""
    send_text(conn_id, to, sender, sms_text(alert))


def send_text(conn_id: str, to: Sequence[str], sender: str | None, text: str) -> None:
    """Text every number; each failed number is named (masked) in one AlertDeliveryError at the end."""
    from airflow.sdk import BaseHook

    from b2b_integrations.delivery.sms import post_message
    from b2b_integrations.delivery.sms_text import masked

    if not sender:
        raise AlertDeliveryError(f"no sending number: set sms_from (or [{CONFIG_SECTION}] sms_from)")
    connection = BaseHook.get_connection(conn_id)
    failed = []
    for number in to:
        try:
            post_message(connection, number, sender, text, timeout=SMS_TIMEOUT_SECONDS)
        except B2BError as e:
            failed.append(f"{masked(number)}: {redact(str(e), [connection.password or ''])}")
    if failed:
        raise AlertDeliveryError("; ".join(failed))


def slack_webhook_url(conn: Connection) -> str:
    """The webhook URL of a Slack incoming-webhook connection, read as the Slack provider reads it: the
    password is the whole URL or the path after the endpoint (host, default hooks.slack.com/services)."""
    token = (conn.password or "").strip()
    if not token:
        raise ValueError("the Slack connection has no webhook URL or token in its password")
    if token.startswith(("http://", "https://")):
        return token
    endpoint = (conn.host or SLACK_DEFAULT_ENDPOINT).strip().rstrip("/")
    if "://" not in endpoint:
        endpoint = f"{conn.schema or 'https'}://{endpoint}"
    if conn.port:
        parts = urlsplit(endpoint)
        endpoint = f"{parts.scheme}://{parts.hostname}:{conn.port}{parts.path}"
    return f"{endpoint}/{token.lstrip('/')}"


def _retry_delay(status: int | None, retry_after: str | None, connect_failed: bool) -> float | None:
    """Seconds to wait before the one retry, or None for no retry. Only when the message was certainly
    not posted: no connection, rate limited (429), or a 5xx; never after a timeout (it may have posted)."""
    if connect_failed:
        return 1.0
    if status == 429:
        try:
            return min(max(float(retry_after or 1), 0.0), MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            return 1.0
    if status is not None and 500 <= status < 600:
        return 1.0
    return None


def post_to_slack(url: str, payload: dict[str, Any], *, timeout: float = SLACK_TIMEOUT_SECONDS) -> None:
    """POST the payload to an incoming webhook.

    :raises AlertDeliveryError: with the host and status only (the URL's path is the credential).
    """
    import httpx

    host = urlsplit(url).hostname or "?"
    for attempt in range(1, SLACK_ATTEMPTS + 1):
        status, retry_after, connect_failed = None, None, False
        try:
            # trust_env=False: a proxy from the environment must not see the webhook URL.
            response = httpx.post(url, json=payload, timeout=timeout, trust_env=False)
        except httpx.ConnectError:
            connect_failed, problem = True, f"cannot connect to {host}"
        except httpx.TimeoutException:
            problem = f"no answer from {host} within {timeout:.0f}s"
        except httpx.HTTPError as e:
            problem = f"{type(e).__name__} talking to {host}"
        else:
            if response.is_success:
                return
            status, retry_after = response.status_code, response.headers.get("retry-after")
            problem = f"{host} answered HTTP {status}"
        delay = _retry_delay(status, retry_after, connect_failed)
        if delay is None or attempt == SLACK_ATTEMPTS:
            raise AlertDeliveryError(problem)
        time.sleep(delay)


def send_slack(conn_id: str, alert: FailureAlert) -> None:
    from airflow.sdk import BaseHook

    post_to_slack(slack_webhook_url(BaseHook.get_connection(conn_id)), slack_payload(alert))


def send_email(conn_id: str, to: Sequence[str], alert: FailureAlert, email_from: str | None = None) -> None:
    """Send through the smtp provider's hook (TLS, auth and retries as the connection says)."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    subject, body = email_message(alert)
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        sender = email_from or hook.from_email or DEFAULT_EMAIL_FROM
        hook.send_email_smtp(to=list(to), subject=subject, html_content=body, from_email=sender)


# ------------------------------------------------------------------------------------------ the callback


class CustomerFailureNotifier(BaseNotifier):
    """
    On-failure callback that alerts the customer's (else the operator's) Slack and e-mail targets.

    Every target is tried; a target that fails is logged and, once all were tried, an
    :class:`AlertDeliveryError` names the failed ones (Airflow logs it; the task's state is unchanged).

    :param alert_config: The customer's ``alerts:`` block (see the module docs); None: operator defaults.
    :param customer_id: Customer the DAG belongs to (default: from the step operator or the DAG id).
    :param integration: Integration name (same defaults).
    :param flow: Flow name (same defaults).
    """

    # Nothing is templated: alert settings are customer data, and customer data is never Jinja.
    template_fields: Sequence[str] = ()

    def __init__(
        self,
        *,
        alert_config: Mapping[str, Any] | None = None,
        customer_id: str | None = None,
        integration: str | None = None,
        flow: str | None = None,
    ) -> None:
        super().__init__()
        where = f"customer {customer_id}: alerts" if customer_id else "alerts"
        self.targets = AlertTargets.from_config(alert_config, where)
        self.customer_id = customer_id
        self.integration = integration
        self.flow = flow

    def notify(self, context: Context) -> None:
        from airflow.sdk import conf

        targets = self.targets.or_defaults(operator_defaults())
        alert = alert_from_context(
            context,
            base_url=conf.get("api", "base_url", fallback="http://localhost:8080/"),
            customer_id=self.customer_id,
            integration=self.integration,
            flow=self.flow,
        )
        if targets.empty:
            self.log.warning("No alert target for %s (run %s); set [%s] defaults", alert.where, alert.run_id,
                             CONFIG_SECTION)  # fmt: skip
            return
        failed = []
        for name, send in self._senders(targets, alert):
            try:
                send()
            except Exception as e:  # noqa: BLE001 - one target failing must not stop the others
                problem = describe_error(e)
                self.log.error("Failure alert for %s to %s not sent: %s", alert.where, name, problem)
                failed.append(f"{name}: {problem}")
            else:
                self.log.info("Failure alert for %s (run %s) sent to %s", alert.where, alert.run_id, name)
        if failed:
            raise AlertDeliveryError(
                f"failure alert for {alert.where}, run {alert.run_id}: " + "; ".join(failed)
            )

    @staticmethod
    def _senders(targets: AlertTargets, alert: FailureAlert) -> list[tuple[str, Any]]:
        senders: list[tuple[str, Any]] = []
        if targets.slack_conn_id:
            conn_id = targets.slack_conn_id
            senders.append((f"slack (connection {conn_id})", lambda: send_slack(conn_id, alert)))
        if targets.email_to:
            mail_conn = targets.email_conn_id or "smtp_default"
            senders.append(
                (
                    f"email {', '.join(targets.email_to)} (connection {mail_conn})",
                    lambda: send_email(mail_conn, targets.email_to, alert, targets.email_from),
                )
            )
        if targets.sms_to:
            sms_conn = targets.sms_conn_id or "sms_default"
            senders.append(
                (
                    f"sms to {len(targets.sms_to)} number(s) (connection {sms_conn})",
                    lambda: send_sms(sms_conn, targets.sms_to, targets.sms_from, alert),
                )
            )
        return senders


def failure_callback(
    alert_config: Mapping[str, Any] | None = None,
    *,
    customer_id: str | None = None,
    integration: str | None = None,
    flow: str | None = None,
) -> CustomerFailureNotifier:
    """The on-failure callback for one customer's DAGs (checks ``alert_config`` now, at parse time).

    :raises ValueError: an unknown key or a malformed value in ``alert_config``.
    """
    return CustomerFailureNotifier(
        alert_config=alert_config, customer_id=customer_id, integration=integration, flow=flow
    )
