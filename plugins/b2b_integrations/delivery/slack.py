"""Deliver to Slack: a message through an incoming webhook, or the file through Slack's upload API.

* ``webhook``: the connection's password is the incoming-webhook URL (or only its secret path
  ``T000/B000/XXXX``, joined to the host, default ``https://hooks.slack.com/services``). The URL is a
  secret: it never appears in an error or a log line.
* ``upload``: the connection's password is a bot token with ``files:write``; the host is the API base URL
  (default ``https://slack.com/api``). Slack's current upload flow: ``files.getUploadURLExternal`` ->
  the bytes POSTed to the returned ``upload_url`` -> ``files.completeUploadExternal`` with the channel id and
  the comment. Slack answers HTTP 200 with ``{"ok": false, "error": ...}`` when a call fails.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from b2b_integrations.delivery.base import (
    DeliveryContext,
    DeliveryFailed,
    DeliveryRefused,
    DeliveryTarget,
    ReportFile,
    load_connection,
)
from b2b_integrations.delivery.config import SlackTargetConfig
from b2b_integrations.delivery.http_upload import excerpt, status_error

if TYPE_CHECKING:
    import requests


DEFAULT_API = "https://slack.com/api"
DEFAULT_WEBHOOK_BASE = "https://hooks.slack.com/services"
# Slack errors that a later try may not get (rate limits and Slack's own trouble).
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def base_url(host: str | None, port: int | None, default: str) -> str:
    """A connection host as a URL: a full URL as it is, a bare host as https://host[:port]."""
    host = (host or "").strip().rstrip("/")
    if not host:
        return default
    if "://" in host:
        return host
    return f"https://{host}:{port}" if port else f"https://{host}"


def webhook_url(password: str | None, host: str | None, port: int | None) -> str:
    secret = (password or "").strip()
    if not secret:
        raise DeliveryRefused("the connection has no password: put the incoming-webhook URL there")
    if secret.startswith(("https://", "http://")):
        return secret
    return f"{base_url(host, port, DEFAULT_WEBHOOK_BASE)}/{secret.lstrip('/')}"


def message_text(text: str, link: str | None) -> str:
    return f"{text}\n{link}" if link else text


class SlackDeliveryTarget(DeliveryTarget[SlackTargetConfig]):
    """Post the report's summary (``webhook``) or share the file in a channel (``upload``)."""

    type = "slack"

    def describe(self) -> str:
        where = f"channel {self.config.channel}" if self.config.mode == "upload" else "incoming webhook"
        return f"slack {self.name} ({self.config.mode} to {where} via connection {self.conn_id!r})"

    def deliver(self, report: ReportFile, context: DeliveryContext) -> dict[str, Any]:
        import requests

        connection = load_connection(self.conn_id, context)
        name = context.file_name(self.config.file_name, report)
        link = context.render(self.config.link, report, name) if self.config.link else None
        text = message_text(context.render(self.config.text, report, name), link)
        with requests.Session() as session:
            if self.config.mode == "webhook":
                url = webhook_url(connection.password, connection.host, connection.port)
                context.protect(url)
                return self._post_webhook(session, url, text)
            token = connection.password
            if not token:
                raise DeliveryRefused("the connection has no password: put the bot token (xoxb-...) there")
            api = base_url(connection.host, connection.port, DEFAULT_API)
            session.headers["Authorization"] = f"Bearer {token}"
            return self._upload(session, api, report, name, text)

    def _post_webhook(self, session: requests.Session, url: str, text: str) -> dict[str, Any]:
        response = _call(
            session, "POST", url, "the incoming webhook", self.config.timeout, json={"text": text}
        )
        if response.status_code != 200:
            raise status_error(response.status_code, f"the incoming webhook answered HTTP {response.status_code}: "
                               f"{excerpt(response.text)}")  # fmt: skip
        return {"mode": "webhook", "status": response.status_code}

    def _upload(
        self, session: requests.Session, api: str, report: ReportFile, name: str, text: str
    ) -> dict[str, Any]:
        timeout = self.config.timeout
        ticket = _api_call(
            session,
            f"{api}/files.getUploadURLExternal",
            timeout,
            data={"filename": name, "length": report.size},
        )
        upload_url, file_id = ticket.get("upload_url"), ticket.get("file_id")
        if not upload_url or not file_id:
            raise DeliveryFailed("files.getUploadURLExternal returned no upload_url or file_id")
        with report.path.open("rb") as body:
            sent = _call(
                session, "POST", upload_url, "the upload URL", timeout,
                data=body, headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
        if sent.status_code != 200:
            raise status_error(
                sent.status_code, f"the upload URL answered HTTP {sent.status_code}: {excerpt(sent.text)}"
            )
        done = _api_call(
            session,
            f"{api}/files.completeUploadExternal",
            timeout,
            data={
                "files": json.dumps([{"id": file_id, "title": name}]),
                "channel_id": self.config.channel,
                "initial_comment": text,
            },
        )
        files = done.get("files") or [{}]
        return {
            "mode": "upload",
            "file_id": file_id,
            "channel": self.config.channel,
            "title": files[0].get("title"),
        }


def _call(
    session: requests.Session, method: str, url: str, what: str, timeout: float, **kwargs: Any
) -> requests.Response:
    import requests

    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException as e:
        # Only the exception type: requests puts the URL in its messages, and a webhook URL is a secret.
        raise DeliveryFailed(f"{what}: {type(e).__name__}") from None


def _api_call(session: requests.Session, url: str, timeout: float, data: dict[str, Any]) -> dict[str, Any]:
    method = url.rsplit("/", 1)[-1]
    response = _call(session, "POST", url, method, timeout, data=data)
    if response.status_code != 200:
        raise status_error(
            response.status_code, f"{method} answered HTTP {response.status_code}: {excerpt(response.text)}"
        )
    try:
        body = response.json()
    except ValueError:
        raise DeliveryFailed(
            f"{method} answered something that is not JSON: {excerpt(response.text)}"
        ) from None
    if not isinstance(body, dict) or not body.get("ok"):
        error = body.get("error") if isinstance(body, dict) else None
        kind = DeliveryFailed if error in _TRANSIENT_ERRORS else DeliveryRefused
        raise kind(f"{method} failed: {error or excerpt(response.text)}")
    return body
