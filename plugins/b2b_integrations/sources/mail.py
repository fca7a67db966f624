"""E-mail messages as records (pure: bytes in, dicts out; the IMAP side is operators/mailbox.py).

A message is identified by its ``Message-ID`` header (what senders keep when they send again), or, when it
has none, by the sha256 of its raw bytes. Attachment names are the sender's data: they never name a file
here; ``attachment_file_name`` derives a safe one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str
    record: dict[str, Any]
    attachments: tuple[Attachment, ...]


def message_key(message_id_header: str | None, raw: bytes) -> str:
    """The message's identity: its Message-ID without angle brackets and spaces, else ``sha256:<hex>``."""
    value = (message_id_header or "").strip().strip("<>").strip()
    return value if value else f"sha256:{hashlib.sha256(raw).hexdigest()}"


def _header_text(value: Any) -> str:
    """A header's text with RFC 2047 encoded words (``=?utf-8?q?...?=``) decoded."""
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (LookupError, UnicodeDecodeError, ValueError, HeaderParseError):  # a broken encoded word
        return str(value)


def _addresses(message: Message, header: str) -> str:
    return ", ".join(addr for _, addr in getaddresses([str(v) for v in message.get_all(header, [])]) if addr)


def _date(message: Message) -> str | None:
    value = message.get("Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # RFC 5322 "-0000": the zone is unknown; read as UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat()


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8")
    except (LookupError, UnicodeDecodeError):  # an unknown or lying charset: keep what decodes
        return payload.decode("utf-8", errors="replace")


def parse_message(raw: bytes, attachment_pattern: str = "*") -> ParsedMessage:
    """The message's record (message_id, sender, recipients, cc, subject, sent_at in UTC, body, attachment
    names; column names that are not SQL keywords) and its attachments whose file name matches
    ``attachment_pattern`` (a glob, case-insensitive). The body is the first text/plain part that is not
    an attachment, else the first text/html one."""
    # compat32 keeps headers as written: the default policy parses each one through its header registry
    # (10 ms a message, most of the step's time) and cuts a Message-ID it finds invalid ("<a,b@x>" ->
    # "<a"), which would make different messages one.
    message = BytesParser(policy=policy.compat32).parsebytes(raw)
    key = message_key(" ".join(str(message.get("Message-ID", "") or "").split()), raw)
    attachments, bodies = [], {}
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename is not None or part.get_content_disposition() == "attachment":
            name = _header_text(filename or "")
            if fnmatch.fnmatch(name.lower(), attachment_pattern.lower()):
                data = part.get_payload(decode=True)
                attachments.append(
                    Attachment(name=name, content_type=part.get_content_type(), data=data or b"")
                )
        elif part.get_content_type() in ("text/plain", "text/html"):
            bodies.setdefault(part.get_content_type(), part)
    body = bodies.get("text/plain") or bodies.get("text/html")
    record = {
        "message_id": key,
        "sender": _addresses(message, "From"),
        "recipients": _addresses(message, "To"),
        "cc": _addresses(message, "Cc"),
        "subject": _header_text(message.get("Subject")),
        "sent_at": _date(message),
        "body": _decoded(body) if body is not None else "",
        "attachment_names": ", ".join(a.name for a in attachments),
    }
    return ParsedMessage(message_id=key, record=record, attachments=tuple(attachments))


def attachment_file_name(index: int, name: str) -> str:
    """A local file name for an attachment: its index, then the name reduced to ``[A-Za-z0-9._-]``."""
    cleaned = _UNSAFE_NAME.sub("_", name).strip("._") or "attachment"
    return f"{index:03d}-{cleaned[:100]}"


def attachment_record(message: ParsedMessage, attachment: Attachment, path: str) -> dict[str, Any]:
    """One record per attachment (``emit: attachments``): where the file is, and which message it came in."""
    return {
        "message_id": message.message_id,
        "sender": message.record["sender"],
        "subject": message.record["subject"],
        "sent_at": message.record["sent_at"],
        "attachment_name": attachment.name,
        "content_type": attachment.content_type,
        "size": len(attachment.data),
        "sha256": attachment.sha256,
        "path": path,
    }
