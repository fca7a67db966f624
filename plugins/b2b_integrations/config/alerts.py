"""A customer's ``alerts:`` block: where its failure alerts go (``alerts.AlertTargets`` is built from it)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field

from b2b_integrations.config.options import OptionBlock

_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")


def _text(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError("expected a non-empty string")
    return value


def _items(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    items = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"expected {what}")
    return [item for item in items if item]


def email_addresses(value: Any) -> list[str] | None:
    """One address, a comma-separated text of them, or a list; ``ValueError`` names what is wrong."""
    items = _items(value, "an address or a list of addresses")
    bad = [item for item in items or [] if not _ADDRESS.fullmatch(item)]
    if bad:
        raise ValueError(f"not an e-mail address: {', '.join(repr(b) for b in bad)}")
    return items


def phone_numbers(value: Any) -> list[str] | None:
    """One number, a comma-separated text of them, or a list, each made E.164."""
    from b2b_integrations.delivery.sms_text import e164

    items = _items(value, "a phone number or a list of phone numbers")
    return None if items is None else [e164(item) for item in items]


def _one_phone(value: Any) -> Any:
    numbers = phone_numbers(value) if value else None
    return numbers[0] if numbers else None


Text = Annotated[str | None, BeforeValidator(_text)]
Addresses = Annotated[str | list[str] | None, BeforeValidator(email_addresses)]
Phones = Annotated[str | list[str] | None, BeforeValidator(phone_numbers)]


class AlertOptions(OptionBlock):
    """Where a customer's failure alerts go; unset targets fall back to the operator's [b2b_alerts]."""

    unknown_keys: ClassVar[str | None] = "unknown key(s) {unknown_text}; allowed: {allowed_text}"

    slack: Text = Field(None, description="Slack incoming-webhook connection id (conn type slackwebhook).")
    email: Addresses = Field(None, description="Recipients: an address, a comma-separated list or a list.")
    email_connection: Text = Field(None, description="SMTP connection id (else the operator's).")
    email_from: Text = Field(None, description="Sender address (else the operator's).")
    sms: Phones = Field(None, description="E.164 numbers texted through a Twilio-compatible API.")
    sms_connection: Text = Field(
        None, description="Connection id: account SID as login, auth token as password (else the operator's)."
    )
    sms_from: Annotated[str | None, BeforeValidator(_one_phone), BeforeValidator(_text)] = Field(
        None, description="The sending number (else the operator's)."
    )
