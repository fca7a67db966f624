"""Deliver a notice by SMS through a Twilio-compatible Messages API (the report file itself is not sent).

``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with the form fields ``To``, ``From`` and
``Body``, HTTP Basic auth (account SID, auth token): Twilio's API, which several SMS providers also offer.
The text is fitted to ``max_segments`` first (see ``sms_text``). The request carries an
``Idempotency-Key`` derived from the delivery; Twilio itself does not honour one, so a crash between its
answer and the ledger's commit can send the message twice (see ARCHITECTURE, delivery).
"""

from __future__ import annotations

from typing import Any

from b2b_integrations.delivery.base import (
    DeliveryContext,
    DeliveryFailed,
    DeliveryRefused,
    DeliveryTarget,
    ReportFile,
    load_connection,
)
from b2b_integrations.delivery.config import SmsTargetConfig
from b2b_integrations.delivery.http_upload import IDEMPOTENCY_HEADER, excerpt, status_error
from b2b_integrations.delivery.slack import base_url
from b2b_integrations.delivery.sms_text import e164, fit, is_gsm7, masked, segments

DEFAULT_API = "https://api.twilio.com"


class SmsDeliveryTarget(DeliveryTarget[SmsTargetConfig]):
    """Send ``text`` (placeholders filled, fitted to ``max_segments``) from ``sender`` to ``to``."""

    type = "sms"

    def describe(self) -> str:
        return f"sms {self.name} (to {masked(self.config.to)} via connection {self.conn_id!r})"

    def deliver(self, report: ReportFile, context: DeliveryContext) -> dict[str, Any]:
        connection = load_connection(self.conn_id, context)
        try:
            to, sender = e164(self.config.to), e164(self.config.sender)
        except ValueError as e:  # a ${config.*} value that was only known at run time
            raise DeliveryRefused(str(e)) from None
        name = context.file_name(self.config.file_name, report)
        text = context.render(self.config.text, report, name)
        if not text.strip():
            raise DeliveryRefused("the message text is empty")
        body, cut = fit(text, self.config.max_segments)
        if cut and self.config.too_long == "refuse":
            raise DeliveryRefused(
                f"the message needs {segments(text)} SMS segments, more than max_segments "
                f"({self.config.max_segments}): shorten the text or allow too_long: truncate"
            )
        if cut:
            context.log.warning("SMS text cut to %d segment(s) (max_segments)", self.config.max_segments)
        answer = post_message(
            connection, to, sender, body, timeout=self.config.timeout, idempotency_key=context.delivery_id
        )
        return {
            "message_sid": answer.get("sid"),
            "status": answer.get("status"),
            "to": masked(to),
            "segments": segments(body),
            "encoding": "GSM-7" if is_gsm7(body) else "UCS-2",
            "truncated": cut,
        }


def post_message(
    connection: Any, to: str, sender: str, body: str, *, timeout: float, idempotency_key: str | None = None
) -> dict[str, Any]:
    """POST one message (``to``/``sender`` E.164, ``body`` already fitted) through the connection's API;
    its answer (``sid``, ``status``). Raises DeliveryFailed (may pass on a retry) or DeliveryRefused."""
    import requests

    sid, token = connection.login, connection.password
    if not sid or not token:
        raise DeliveryRefused(
            f"connection {connection.conn_id!r} needs the account SID as login and the auth token as password"
        )
    url = f"{base_url(connection.host, connection.port, DEFAULT_API)}/2010-04-01/Accounts/{sid}/Messages.json"
    try:
        response = requests.post(
            url,
            data={"To": to, "From": sender, "Body": body},
            auth=(sid, token),
            headers={IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else {},
            timeout=timeout,
        )
    except requests.RequestException as e:
        raise DeliveryFailed(f"the SMS API: {type(e).__name__}") from None  # requests' messages quote the URL
    if response.status_code not in (200, 201):
        raise status_error(
            response.status_code, f"the SMS API answered HTTP {response.status_code}: {_api_error(response)}"
        )
    return _json(response)


def _json(response: Any) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _api_error(response: Any) -> str:
    """Twilio's error document (``code``, ``message``) when there is one, else the start of the body."""
    error = _json(response)
    if "message" in error:
        code = f"code {error['code']}: " if error.get("code") is not None else ""
        return excerpt(f"{code}{error['message']}")
    return excerpt(response.text)
