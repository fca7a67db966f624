"""Deliver by email through the smtp provider's ``SmtpHook``: the report attached, texts from the config.

The ``Message-ID`` is derived from the delivery id, so a message sent again after a crash (sent, but not
yet recorded in the ledger) carries the same id, and mail systems that deduplicate on it show it once.
Server, port, TLS and login come from the SMTP connection (its extra ``disable_ssl``, ``disable_tls``,
``from_email`` as the provider defines them); the target's ``timeout`` replaces the connection's. The
connection's ``retry_limit`` applies to connecting and sending: set it to 0 and leave retries to the task.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import smtplib
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from b2b_integrations.delivery.base import (
    DeliveryContext,
    DeliveryFailed,
    DeliveryRefused,
    DeliveryTarget,
    ReportFile,
    load_connection,
)
from b2b_integrations.delivery.config import EmailTargetConfig


def address_list(value: list[str] | str) -> list[str]:
    if isinstance(value, str):
        return [part for part in re.split(r"\s*[,;]\s*", value.strip()) if part]
    return list(value)


def html_body(text: str) -> str:
    """The body text as HTML (the provider sends an HTML part): escaped, line breaks kept."""
    return (
        '<html><body><div style="white-space: pre-wrap; font-family: sans-serif">'
        f"{html.escape(text)}</div></body></html>"
    )


def message_id(delivery_id: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[-1].strip("<> ") or "b2b-integrations.invalid"
    return f"<b2b.{delivery_id}@{domain}>"


class EmailDeliveryTarget(DeliveryTarget[EmailTargetConfig]):
    """Email the report as an attachment to ``to`` (and ``cc``) through the connection's SMTP server."""

    type = "email"

    def describe(self) -> str:
        recipients = address_list(self.config.to)
        return f"email {self.name} (to {', '.join(recipients)} via connection {self.conn_id!r})"

    def deliver(self, report: ReportFile, context: DeliveryContext) -> dict[str, Any]:
        connection = load_connection(self.conn_id, context)
        limit = int(self.config.max_attachment_mb * 1024 * 1024)
        if report.size > limit:
            raise DeliveryRefused(
                f"{report.name} has {report.size} bytes, over max_attachment_mb "
                f"({self.config.max_attachment_mb:g} MB): send it by another target and a link"
            )
        name = context.file_name(self.config.file_name, report)
        sender = self.config.from_email or connection.extra_dejson.get("from_email")
        if not sender:
            raise DeliveryRefused(
                "no sender: set from_email on the target or 'from_email' in the connection's extra"
            )
        to, cc = address_list(self.config.to), address_list(self.config.cc)
        # One line: a line break from a placeholder value (a summary label, say) would break the header.
        subject = " ".join(context.render(self.config.subject, report, name).split())
        mid = message_id(context.delivery_id, sender)
        with tempfile.TemporaryDirectory(prefix="b2b-mail-") as scratch:
            # The provider names the attachment after the file: give it the delivered name.
            attachment = (
                report.path if report.path.name == name else _named_copy(report.path, Path(scratch, name))
            )
            self._send(
                to=to,
                cc=cc or None,
                subject=subject,
                html_content=html_body(context.render(self.config.body, report, name)),
                from_email=sender,
                files=[str(attachment)],
                custom_headers={"Message-ID": mid, "X-B2B-Delivery-Id": context.delivery_id},
            )
        return {
            "message_id": mid,
            "to": to,
            "cc": cc,
            "subject": subject,
            "attachment": name,
            "bytes": report.size,
        }

    def _send(self, **message: Any) -> None:
        from airflow.sdk.exceptions import AirflowException

        try:
            with _timed_smtp_hook()(str(self.conn_id), self.config.timeout) as hook:
                hook.send_email_smtp(**message)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused) as e:
            raise DeliveryRefused(f"{type(e).__name__}: {_smtp_text(e)}") from None
        except smtplib.SMTPResponseException as e:
            # 5xx is a permanent refusal (bad sender, message too big); 4xx asks to try again later.
            error = DeliveryRefused if e.smtp_code >= 500 else DeliveryFailed
            raise error(f"SMTP {e.smtp_code}: {_smtp_text(e)}") from None
        except AirflowException as e:  # the provider's own checks (no connection, no sender)
            raise DeliveryRefused(str(e)) from None
        except (OSError, smtplib.SMTPException) as e:
            raise DeliveryFailed(f"{type(e).__name__}: {e}") from None


@cache
def _timed_smtp_hook() -> type[Any]:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class TimedSmtpHook(SmtpHook):
        """The provider's hook with the target's timeout (the provider reads one from the connection only)."""

        def __init__(self, smtp_conn_id: str, timeout: float) -> None:
            super().__init__(smtp_conn_id=smtp_conn_id)
            self.timeout_seconds = timeout

        @property
        def timeout(self) -> int:
            return max(1, int(self.timeout_seconds))

    return TimedSmtpHook


def _smtp_text(error: smtplib.SMTPException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        text = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        return text[:300]
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + ", ".join(sorted(error.recipients))
    return str(error)[:300]


def _named_copy(source: Path, target: Path) -> Path:
    try:
        os.link(source, target)
    except OSError:  # another filesystem: copy (attachments are small, see max_attachment_mb)
        shutil.copyfile(source, target)
    return target
