"""A real SMTP server (aiosmtpd) on a free loopback port that keeps every message it accepts.

``start_smtp_server()`` runs aiosmtpd's ``Controller`` (its own event loop thread) with plain SMTP and
LOGIN/PLAIN authentication against one user, and returns an ``SmtpServer`` with the accepted messages,
the Airflow connection JSON for the smtp provider, and ``refuse_next(n, code)`` to make the next ``n``
messages fail at DATA. ``SmtpServer.stop()`` ends it.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from servers import free_port


@dataclass
class Received:
    """One accepted message: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def attachments(self) -> dict[str, bytes]:
        """File name -> decoded bytes of every attachment."""
        found: dict[str, bytes] = {}
        for part in self.message.iter_attachments():
            payload = part.get_payload(decode=True)
            found[str(part.get_filename())] = payload if isinstance(payload, bytes) else b""
        return found


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refusals:
                return self.refusals.pop(0)
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    user: str
    password: str
    controller: Controller
    handler: _Handler
    _stopped: bool = field(default=False, repr=False)

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    def clear(self) -> None:
        with self.handler.lock:
            self.handler.messages.clear()
            self.handler.refusals.clear()

    def refuse_next(self, count: int, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next ``count`` messages with ``reply`` at DATA (4xx: transient, 5xx: permanent)."""
        with self.handler.lock:
            self.handler.refusals.extend([reply] * count)

    def airflow_conn_json(self, password: str | None = None, from_email: str = "reports@b2b.example") -> str:
        """This server as an smtp connection: plain SMTP (no SSL, no STARTTLS), login, sender address."""
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": self.host,
                "port": self.port,
                "login": self.user,
                "password": self.password if password is None else password,
                "extra": {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": from_email,
                    "timeout": 10,
                    "retry_limit": 0,
                },
            }
        )

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.controller.stop()


def start_smtp_server(
    host: str = "127.0.0.1", user: str = "mailer", password: str = "smtp-Secret-Pw-123"
) -> SmtpServer:
    """Start the server and wait until it answers (``Controller.start`` checks with a connection)."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        # handled=False: aiosmtpd then answers 535 itself (with True it would send nothing and the client hangs).
        return AuthResult(success=ok, handled=False, auth_data=data)

    handler = _Handler()
    controller = Controller(
        handler,
        hostname=host,
        port=free_port(host),
        authenticator=authenticate,
        auth_require_tls=False,  # loopback only: a test server without a certificate
        data_size_limit=64 * 1024 * 1024,
    )
    controller.start()
    return SmtpServer(host, controller.port, user, password, controller, handler)
