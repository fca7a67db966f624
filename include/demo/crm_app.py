"""A demo third-party SaaS app, a small CRM, that integration tests, benchmarks and the demo use as a real server.

It keeps ``contacts``, ``companies`` and ``invoices`` in memory, seeded deterministically at startup (the same
flags give the same records; ``updated_at`` values lie in the 90 days before ``--anchor``, by default today's
midnight UTC, and several records share each value so inclusive cursors matter).

    python include/demo/crm_app.py --port 8001 [--contacts 250 --companies 40 --invoices 300]
    curl -H 'X-API-Key: demo-api-key' 'http://127.0.0.1:8001/api/page/contacts?per_page=2'

Endpoints (``{r}`` is contacts, companies or invoices; every list is sorted by ``(updated_at, id)`` and takes
an inclusive ``updated_since``; page sizes default to 50, at most 1000):

- ``GET /api/page/{r}?page=&per_page=``  -> ``{"data": {"items": []}, "meta": {page, per_page, total, total_pages}}``
- ``GET /api/offset/{r}?offset=&limit=`` -> ``{"items": [], "offset", "limit", "total"}``
- ``GET /api/cursor/{r}?limit=&cursor=`` -> ``{"results": [], "next_cursor": str | null}``
- ``GET /api/next/{r}?limit=``           -> ``{"records": [], "links": {"next": absolute URL | null}}``
- ``GET /api/link/{r}?page=&per_page=``  -> a JSON array; ``Link: <url>; rel="next"`` while there is more
- ``GET|PATCH|PUT|DELETE /api/{r}/{id}``, ``POST /api/{r}``: CRUD (unknown fields are a 400; PUT answers 201
  when it creates); a write sets ``updated_at`` to now, or to one second past the resource's newest value when
  that is not earlier, so more than one write per second per resource runs ahead of the clock
- ``POST /api/webhooks/subscriptions`` (also GET, and DELETE ``/{id}``): signed event webhooks after writes
- ``POST /oauth/token``: OAuth2 client credentials; ``GET /health``
- ``POST /api/payments/charges`` (``{amount, currency, payment_token, reference}``): a payment processor with
  test tokens (``tok_visa``, ``tok_mastercard``; declined: ``tok_declined``, ``tok_insufficient_funds``,
  ``tok_expired``, or an amount over the limit, default 1000.00) answering 201 or 402 with a Stripe-like
  ``{"error": {"code", "decline_code", "message"}}``; ``GET /api/payments/charges/{id}``;
  ``POST /api/warehouse/fulfilments`` (``{order_id, charge_id, items: [{sku, quantity}], ship_to}``): 201,
  409 unless the charge succeeded, 200 with the same fulfilment for an order already fulfilled. Both honour
  ``Idempotency-Key`` (charges: the same answer again, 409 for another body) and ``/admin/faults`` (by path);
  ``GET|POST|DELETE /admin/payments``: list, set ``{"limit"}``, reset
- ``POST /sms/2010-04-01/Accounts/{sid}/Messages.json``: a Twilio-compatible SMS API (form ``To``, ``From``,
  ``Body``; Basic auth ``SMS_ACCOUNT_SID``:``demo-sms-token``; Twilio's 401/400 error documents; 201 with the
  message; a repeated ``Idempotency-Key`` gets the first answer); ``GET|DELETE /admin/sms``: list, reset
- ``POST /inbound/{name}``: a sink that records deliveries; ``GET /admin/inbound/{name}`` lists them,
  ``POST /admin/inbound/{name}/responses {"statuses": [500, 429]}`` makes it answer those next (then 202)
- ``/admin/config``, ``/admin/faults``, ``/admin/expire-tokens``, ``/admin/stats``, ``/admin/reset``,
  ``/admin/webhooks/send``, ``/admin/webhooks/log``, ``/admin/webhooks/pending`` (event deliveries not yet
  finished): runtime faults and limits, statistics, test helpers

``/api/*`` accepts ``X-API-Key``, ``Authorization: Bearer`` (the static token or an OAuth token) and
``Authorization: Basic``, all at once; an empty credential flag disables that mode. ``/admin/*`` and
``/inbound/*`` need no auth: this is a test double, never expose it beyond loopback. ``/docs`` has OpenAPI.

Webhook signatures (``scheme``):

- ``standard``: Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64
  HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``; a ``whsec_`` secret carries the base64 key, any other
  secret is used as its UTF-8 bytes.
- ``github``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``, ``X-GitHub-Delivery: <msg id>``
  and ``X-GitHub-Event: <event type>`` when there is one.
- ``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>``; the message id goes
  in ``Idempotency-Key`` (Stripe itself puts it in the body only).
- ``header``: the secret itself in ``header_name`` (default ``X-Webhook-Secret``), the id in ``X-Webhook-Id``.

Event deliveries to subscriptions are retried 3 times (after 0.2, 0.5 and 1 s) while the receiver answers
non-2xx or cannot be reached, with the same message id and a fresh timestamp and signature.
"""

# No "from __future__ import annotations": dataclasses and pydantic then look the module up in sys.modules,
# which a plain spec_from_file_location() + exec_module() import by path does not fill in.
import argparse
import asyncio
import base64
import binascii
import bisect
import calendar
import fnmatch
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Self, TypeVar
from urllib.parse import parse_qs

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

RESOURCES = ("contacts", "companies", "invoices")
SINGULAR = {"contacts": "contact", "companies": "company", "invoices": "invoice"}
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
SEED_SPAN_SECONDS = 90 * 86400
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)  # one delay per retry: 4 attempts in all
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_SCHEMES = ("standard", "github", "stripe", "header")
DEFAULT_SECRET_HEADER = "X-Webhook-Secret"
SERVER_FIELDS = frozenset({"id", "created_at", "updated_at"})

FIRST_NAMES = (
    "Anna", "Zoë", "Jürgen", "Liam", "Sofía", "Noah", "Åsa", "Mateo", "Chloé", "Łukasz",
    "Mia", "Søren", "Olivia", "José", "Emma", "François", "Hiroshi", "Amélie", "Björn", "Priya",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Ørsted", "Müller", "García", "O'Brien", "Dvořák", "Nguyen", "Kowalski",
    "Johansson", "Rossi", "Núñez", "Schmidt", "Dubois", "Tanaka", "Jensen", "Brown",
)  # fmt: skip
COMPANY_NAMES = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Ørsted Energi", "Müller & Söhne",
    "Soylent", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Wonka", "Aperture", "Gringotts",
)  # fmt: skip
COMPANY_SUFFIXES = ("GmbH", "Inc.", "Ltd", "A/S", "SARL", "AB", "B.V.", "KK")
COUNTRIES = ("DE", "US", "GB", "DK", "FR", "SE", "NL", "JP", "ES", "PL")
CURRENCIES = ("EUR", "USD", "GBP", "DKK")
INVOICE_STATUSES = ("draft", "open", "paid")
ModelT = TypeVar("ModelT", bound=BaseModel)
_ASCII_FOLD = str.maketrans({"Ø": "O", "ø": "o", "Ł": "L", "ł": "l", "ß": "ss", "'": ""})


# --- time -------------------------------------------------------------------------------------------------


def format_ts(epoch: int) -> str:
    """Whole seconds since the epoch as the API's timestamp form, ``2026-01-05T10:00:00Z``."""
    return time.strftime(TS_FORMAT, time.gmtime(epoch))


def parse_ts(text: str) -> datetime:
    """An ISO-8601 timestamp as an aware UTC datetime; without an offset it is taken as UTC.

    :raises ValueError: when ``text`` is not ISO-8601.
    """
    # An unencoded "+" in a query string arrives as a space: "...10:00:00 00:00" meant "+00:00".
    text = re.sub(r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$", r"\1+\2", text.strip())
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def since_key(text: str) -> str:
    """The smallest stored timestamp that is >= ``text`` (stored values have whole seconds, so round up)."""
    value = parse_ts(text)
    if value.microsecond:
        value = value.replace(microsecond=0) + timedelta(seconds=1)
    return format_ts(calendar.timegm(value.timetuple()))


def default_anchor(now: float | None = None) -> int:
    """Midnight UTC of the current day: seeded records are dated before it, writes after it."""
    now = time.time() if now is None else now
    return int(now) // 86400 * 86400


# --- seeding ----------------------------------------------------------------------------------------------


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")


def company_domain(company_id: int) -> str:
    """The seeded domain of a company (contacts' e-mail addresses use it, so it depends on the id only)."""
    base = COMPANY_NAMES[(company_id - 1) % len(COMPANY_NAMES)]
    return f"{_ascii_slug(base)}-{company_id}.example.com"


class _Clock:
    """Seeded (updated_at, created_at) pairs: about three records per updated_at value, spread over 90 days."""

    def __init__(self, rng: random.Random, anchor: int, count: int) -> None:
        self.rng = rng
        self.anchor = anchor
        self.slots = max(1, count // 3)
        self.spacing = max(60, SEED_SPAN_SECONDS // self.slots // 60 * 60)
        self._formatted: dict[int, str] = {}

    def stamps(self) -> tuple[str, str, int]:
        """(updated_at, created_at, created epoch)."""
        slot = self.rng.randrange(self.slots)
        updated = self.anchor - (slot + 1) * self.spacing
        created = updated - self.rng.randrange(0, 30 * 86400)
        text = self._formatted.get(slot)
        if text is None:
            text = self._formatted[slot] = format_ts(updated)
        return text, format_ts(created), created


def _seed_contacts(rng: random.Random, clock: _Clock, count: int, companies: int) -> list[dict[str, Any]]:
    slugs = {name: _ascii_slug(name) for name in FIRST_NAMES + LAST_NAMES}
    records = []
    for record_id in range(1, count + 1):
        updated, created, _ = clock.stamps()
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        company_id = rng.randint(1, companies) if companies and rng.random() < 0.9 else None
        domain = company_domain(company_id) if company_id else "example.org"
        phone = f"+{rng.choice((1, 33, 44, 45, 46, 49))} {rng.randrange(100_000_000, 1_000_000_000)}"
        records.append(
            {
                "id": record_id,
                "first_name": first,
                "last_name": last,
                "email": f"{slugs[first]}.{slugs[last]}.{record_id}@{domain}",
                "company_id": company_id,
                "phone": phone if rng.random() < 0.8 else None,
                "updated_at": updated,
                "created_at": created,
            }
        )
    return records


def _seed_companies(rng: random.Random, clock: _Clock, count: int) -> list[dict[str, Any]]:
    records = []
    for record_id in range(1, count + 1):
        updated, created, _ = clock.stamps()
        base = COMPANY_NAMES[(record_id - 1) % len(COMPANY_NAMES)]
        records.append(
            {
                "id": record_id,
                "name": f"{base} {rng.choice(COMPANY_SUFFIXES)}",
                "domain": company_domain(record_id),
                "country": rng.choice(COUNTRIES),
                "updated_at": updated,
                "created_at": created,
            }
        )
    return records


def _seed_invoices(rng: random.Random, clock: _Clock, count: int, companies: int) -> list[dict[str, Any]]:
    records = []
    for record_id in range(1, count + 1):
        updated, created, created_epoch = clock.stamps()
        cents = rng.randrange(1_000, 5_000_000)
        records.append(
            {
                "id": record_id,
                "company_id": rng.randint(1, companies) if companies else None,
                "number": f"INV-{created[:4]}-{record_id:06d}",
                "amount": f"{cents // 100}.{cents % 100:02d}",
                "currency": rng.choice(CURRENCIES),
                "status": rng.choices(INVOICE_STATUSES, weights=(1, 3, 6))[0],
                "issued_on": format_ts(created_epoch)[:10],
                "updated_at": updated,
                "created_at": created,
            }
        )
    return records


def seed_records(
    resource: str, count: int, *, anchor: int, seed: int = 42, companies: int = 40
) -> list[dict[str, Any]]:
    """The seeded records of one resource, ids 1..count: the same arguments always give the same records.

    :param anchor: epoch seconds; every seeded ``updated_at`` and ``created_at`` is before it.
    :param companies: how many companies exist, for ``company_id`` references.
    """
    rng = random.Random(f"{seed}:{resource}")  # a str seed is hashed with SHA-512: stable across runs
    clock = _Clock(rng, anchor, count)
    if resource == "contacts":
        return _seed_contacts(rng, clock, count, companies)
    if resource == "companies":
        return _seed_companies(rng, clock, count)
    if resource == "invoices":
        return _seed_invoices(rng, clock, count, companies)
    raise ValueError(f"unknown resource {resource!r}; expected one of {', '.join(RESOURCES)}")


# --- cursors, rate limiting, signatures ----------------------------------------------------------------


def encode_cursor(updated_at: str, record_id: int) -> str:
    """An opaque cursor for "after the record at (updated_at, id)": URL-safe base64 of a small JSON object."""
    raw = json.dumps({"u": updated_at, "i": record_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """The (updated_at, id) position in a cursor from :func:`encode_cursor`.

    :raises ValueError: when the cursor was not made by :func:`encode_cursor`.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) or type(data.get("i")) is not int:
        raise ValueError("invalid cursor")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["u"]):
        raise ValueError("invalid cursor")
    return data["u"], data["i"]


class TokenBucket:
    """``rate`` requests per second on average, with bursts of up to ``capacity`` (default: one second's worth)."""

    def __init__(self, rate: float, capacity: float | None = None, now: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic() if now is None else now

    def acquire(self, now: float | None = None) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there will be one (nothing taken)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def standard_webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after ``whsec_``, else the secret's UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must continue with base64") from None
    return secret.encode()


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of the Standard Webhooks spec: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhook_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_github(secret: str, body: bytes) -> str:
    """GitHub's ``X-Hub-Signature-256`` value: ``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_stripe(secret: str, timestamp: int, body: bytes) -> str:
    """Stripe's ``Stripe-Signature`` value: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_headers(
    scheme: str,
    secret: str,
    msg_id: str,
    body: bytes,
    timestamp: int,
    *,
    header_name: str | None = None,
    event_type: str | None = None,
) -> dict[str, str]:
    """The HTTP headers of one webhook delivery signed with ``scheme`` (see the module docstring)."""
    headers = {"Content-Type": "application/json", "User-Agent": "demo-crm-webhooks/1"}
    if scheme == "standard":
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = sign_standard(secret, msg_id, timestamp, body)
    elif scheme == "github":
        headers["X-Hub-Signature-256"] = sign_github(secret, body)
        headers["X-GitHub-Delivery"] = msg_id
        if event_type:
            headers["X-GitHub-Event"] = event_type
    elif scheme == "stripe":
        headers["Stripe-Signature"] = sign_stripe(secret, timestamp, body)
        headers["Idempotency-Key"] = msg_id
    elif scheme == "header":
        headers[header_name or DEFAULT_SECRET_HEADER] = secret
        headers["X-Webhook-Id"] = msg_id
    else:
        raise ValueError(f"unknown webhook scheme {scheme!r}; expected one of {', '.join(WEBHOOK_SCHEMES)}")
    return headers


def event_matches(event_type: str, patterns: list[str]) -> bool:
    """Whether a subscription's event patterns (``contact.updated``, ``contact.*``, ``*``) take an event."""
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


# --- settings, errors, request bodies ---------------------------------------------------------------------


@dataclass(frozen=True)
class CrmSettings:
    """Startup settings (the command-line flags). An empty credential disables that auth mode."""

    contacts: int = 250
    companies: int = 40
    invoices: int = 300
    seed: int = 42
    anchor: int | None = None  # epoch seconds; None = midnight UTC of the startup day
    api_key: str = "demo-api-key"
    bearer_token: str = "demo-bearer-token"
    basic_user: str = "demo"
    basic_password: str = "demo-password"
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    token_ttl: int = 3600
    latency_ms: float = 0.0
    rate_limit_per_second: float | None = None
    error_rate: float = 0.0


class ApiError(Exception):
    """An error answered as ``{"error": ..., "detail": ...}`` with its status and headers."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "detail": self.detail}, status_code=self.status, headers=self.headers
        )


def _bad_request(detail: str) -> ApiError:
    return ApiError(400, "bad_request", detail)


def _validation_detail(exc: ValidationError | RequestValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactFields(_Fields):
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    company_id: int | None = None
    phone: str | None = None


class CompanyFields(_Fields):
    name: str | None = None
    domain: str | None = None
    country: str | None = None


class InvoiceFields(_Fields):
    company_id: int | None = None
    number: str | None = None
    amount: str | None = None
    currency: str | None = None
    status: Literal["draft", "open", "paid"] | None = None
    issued_on: date | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _decimal_amount(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise ValueError("must be a decimal number such as '123.45'") from None
        if not amount.is_finite():
            raise ValueError("must be a decimal number such as '123.45'")
        return str(amount.quantize(Decimal("0.01")))


FIELDS: dict[str, type[_Fields]] = {
    "contacts": ContactFields,
    "companies": CompanyFields,
    "invoices": InvoiceFields,
}


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_ms: float | None = Field(None, ge=0)
    rate_limit_per_second: float | None = Field(None, ge=0)  # null or 0 = no limit
    error_rate: float | None = Field(None, ge=0, le=1)
    token_ttl: int | None = Field(None, ge=0)


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["500", "429", "timeout", "malformed"]
    count: int = Field(1, ge=1)
    retry_after: int = Field(1, ge=0)
    delay_s: float = Field(5.0, ge=0)
    path_contains: str | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class _WebhookTarget(BaseModel):
    """Where and how to send webhooks; a secret that cannot sign with its scheme is a 400 up front."""

    model_config = ConfigDict(extra="forbid")
    url: str
    secret: str
    scheme: Literal["standard", "github", "stripe", "header"] = "standard"
    header_name: str | None = None

    @model_validator(mode="after")
    def _secret_fits_scheme(self) -> Self:
        webhook_headers(self.scheme, self.secret, "probe", b"", 0)
        return self


class SubscriptionIn(_WebhookTarget):
    events: list[str] = Field(default_factory=lambda: ["*"])


class WebhookSendIn(_WebhookTarget):
    payload: Any = Field(default_factory=dict)
    msg_id: str | None = None
    timestamp: int | None = None  # to send a stale signature on purpose


class InboundResponsesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    statuses: list[int]


# --- state ------------------------------------------------------------------------------------------------


class ResourceStore:
    """One resource's records plus a sorted ``(updated_at, id)`` index, for ordered and filtered reads."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records: dict[int, dict[str, Any]] = {record["id"]: record for record in records}
        self.keys: list[tuple[str, int]] = sorted((record["updated_at"], record["id"]) for record in records)
        self.next_id = max(self.records, default=0) + 1
        self._latest = calendar.timegm(time.strptime(self.keys[-1][0], TS_FORMAT)) if self.keys else 0

    def start(self, since: str | None) -> int:
        """Index of the first key with ``updated_at >= since`` (``since`` in stored form)."""
        return bisect.bisect_left(self.keys, (since,)) if since else 0

    def after(self, key: tuple[str, int]) -> int:
        """Index of the first key after ``key``."""
        return bisect.bisect_right(self.keys, key)

    def window(self, begin: int, count: int) -> list[dict[str, Any]]:
        return [self.records[record_id] for _, record_id in self.keys[begin : begin + count]]

    def next_timestamp(self, now: float | None = None) -> str:
        """Now, or one second past the newest ``updated_at`` when that is not earlier: strictly the newest."""
        self._latest = max(int(time.time() if now is None else now), self._latest + 1)
        return format_ts(self._latest)

    def save(self, record: dict[str, Any]) -> None:
        """Insert or replace (records are replaced, never changed in place: responses may still hold them)."""
        self._unindex(record["id"])
        self.records[record["id"]] = record
        bisect.insort(self.keys, (record["updated_at"], record["id"]))
        self.next_id = max(self.next_id, record["id"] + 1)

    def delete(self, record_id: int) -> dict[str, Any] | None:
        self._unindex(record_id)
        return self.records.pop(record_id, None)

    def _unindex(self, record_id: int) -> None:
        old = self.records.get(record_id)
        if old is not None:
            del self.keys[bisect.bisect_left(self.keys, (old["updated_at"], record_id))]


@dataclass
class Fault:
    """A pending one-shot fault (``POST /admin/faults``); ``count`` is how many requests it still hits."""

    kind: str
    count: int
    retry_after: int = 1
    delay_s: float = 5.0
    path_contains: str | None = None


@dataclass
class Stats:
    """What ``GET /admin/stats`` reports."""

    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    records_served: int = 0
    token_requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "records_served": self.records_served,
            "token_requests": self.token_requests,
        }


@dataclass
class RuntimeConfig:
    """The settings ``POST /admin/config`` changes at runtime."""

    latency_ms: float = 0.0
    rate_limit_per_second: float | None = None
    error_rate: float = 0.0
    token_ttl: int = 3600


class CrmState:
    """Everything the app holds: data, runtime config, faults, statistics, tokens and webhook bookkeeping."""

    def __init__(self, settings: CrmSettings) -> None:
        self.settings = settings
        # Resolved once, so /admin/reset restores the very same records even after midnight.
        self.anchor = settings.anchor if settings.anchor is not None else default_anchor()
        self.tokens: dict[str, float] = {}  # access token -> monotonic expiry; kept across /admin/reset
        self.tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.reset()

    def reset(self) -> None:
        """Back to the startup state (OAuth tokens stay valid)."""
        s = self.settings
        counts = {"contacts": s.contacts, "companies": s.companies, "invoices": s.invoices}
        self.stores = {
            name: ResourceStore(
                seed_records(name, counts[name], anchor=self.anchor, seed=s.seed, companies=s.companies)
            )
            for name in RESOURCES
        }
        self.config = RuntimeConfig(s.latency_ms, s.rate_limit_per_second or None, s.error_rate, s.token_ttl)
        self.bucket = TokenBucket(s.rate_limit_per_second) if s.rate_limit_per_second else None
        self.rng = random.Random(s.seed)
        self.faults: list[Fault] = []
        self.stats = Stats()
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.webhook_log: list[dict[str, Any]] = []
        self.inbound: dict[str, list[dict[str, Any]]] = {}
        self.inbound_responses: dict[str, list[int]] = {}
        for task in self.tasks:
            task.cancel()

    def store(self, resource: str) -> ResourceStore:
        try:
            return self.stores[resource]
        except KeyError:
            raise ApiError(
                404, "not_found", f"unknown resource {resource!r}; one of {', '.join(RESOURCES)}"
            ) from None

    def update_config(self, update: ConfigUpdate) -> None:
        for name in update.model_fields_set:
            value = getattr(update, name)
            if value is not None or name == "rate_limit_per_second":  # null only means "off" for the limit
                setattr(self.config, name, value)
        if "rate_limit_per_second" in update.model_fields_set:
            rate = self.config.rate_limit_per_second or None
            self.config.rate_limit_per_second = rate
            self.bucket = TokenBucket(rate) if rate else None

    def take_fault(self, target: str) -> Fault | None:
        """Use up one occurrence of the first pending fault that matches ``target`` (the request's path and query)."""
        for fault in self.faults:
            if fault.path_contains is None or fault.path_contains in target:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # auth

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Accept any one valid credential; raise a 401 that never repeats what was presented."""
        problems: list[str] = []
        api_key = headers.get("x-api-key")
        if api_key is not None:
            if _same(api_key, self.settings.api_key):
                return
            problems.append("invalid API key")
        scheme, _, value = headers.get("authorization", "").strip().partition(" ")
        if scheme:
            problem = self._check_authorization(scheme.lower(), value.strip())
            if problem is None:
                return
            problems.append(problem)
        if not problems:
            problems.append(
                "missing credentials: send X-API-Key, Authorization: Bearer or Authorization: Basic"
            )
        challenge = 'Bearer realm="demo-crm"'
        if any("access token" in problem for problem in problems):
            challenge += ', error="invalid_token"'
        raise ApiError(401, "unauthorized", "; ".join(problems), {"WWW-Authenticate": challenge})

    def _check_authorization(self, scheme: str, value: str) -> str | None:
        if scheme == "bearer":
            if _same(value, self.settings.bearer_token):
                return None
            expiry = self.tokens.get(value)
            if expiry is None:
                return "unknown access token"
            return None if time.monotonic() < expiry else "access token expired"
        if scheme == "basic":
            user, password = _basic_credentials(value)
            if user is not None and _same(user, self.settings.basic_user):
                if _same(password or "", self.settings.basic_password):
                    return None
            return "invalid basic credentials"
        return "unsupported Authorization scheme: use Bearer or Basic"

    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        """Raise the OAuth2 ``invalid_client`` error unless these are the configured client credentials."""
        if not (
            client_id is not None
            and _same(client_id, self.settings.client_id)
            and _same(client_secret or "", self.settings.client_secret)
        ):
            raise ApiError(401, "invalid_client", "unknown client or wrong client secret")

    def issue_token(self) -> dict[str, Any]:
        """A new random access token valid for the configured ``token_ttl``, as the token endpoint's body."""
        token = secrets.token_urlsafe(32)
        ttl = self.config.token_ttl
        self.tokens[token] = time.monotonic() + ttl
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}

    # webhooks

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            # Receivers are local test servers: a proxy from the environment must not capture loopback.
            self._http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, trust_env=False)
        return self._http

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def send_webhook(
        self,
        target: dict[str, Any],
        payload: Any,
        msg_id: str,
        *,
        attempt: int = 1,
        timestamp: int | None = None,
        event_type: str | None = None,
    ) -> dict[str, Any]:
        """POST one signed webhook to ``target`` (url, secret, scheme, header_name); log and return the attempt."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = webhook_headers(
            target["scheme"],
            target["secret"],
            msg_id,
            body,
            int(time.time()) if timestamp is None else timestamp,
            header_name=target.get("header_name"),
            event_type=event_type,
        )
        entry: dict[str, Any] = {
            "url": target["url"],
            "status": None,
            "msg_id": msg_id,
            "attempt": attempt,
            "event_type": event_type,
            "error": None,
            "sent_at": format_ts(int(time.time())),
        }
        try:
            response = await self.http().post(target["url"], content=body, headers=headers)
            entry["status"] = response.status_code
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        self.webhook_log.append(entry)
        return entry

    def emit(self, resource: str, action: str, record: dict[str, Any]) -> None:
        """Queue the event of a write for every matching subscription; delivery runs in the background."""
        event_type = f"{SINGULAR[resource]}.{action}"
        event = {
            "type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": format_ts(int(time.time())),
            "data": record,
        }
        for subscription in self.subscriptions.values():
            if event_matches(event_type, subscription["events"]):
                # Not a Starlette background task: those hold the client's connection until they finish.
                task = asyncio.get_running_loop().create_task(self._deliver(subscription, event))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _deliver(self, subscription: dict[str, Any], event: dict[str, Any]) -> None:
        for attempt in range(1, len(WEBHOOK_RETRY_DELAYS) + 2):
            entry = await self.send_webhook(
                subscription, event, event["id"], attempt=attempt, event_type=event["type"]
            )
            if entry["status"] is not None and 200 <= entry["status"] < 300:
                return
            if attempt <= len(WEBHOOK_RETRY_DELAYS):
                await asyncio.sleep(WEBHOOK_RETRY_DELAYS[attempt - 1])


def _same(presented: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected value (a disabled mode) never matches."""
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def _basic_credentials(value: str) -> tuple[str | None, str | None]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


# --- list endpoints ---------------------------------------------------------------------------------------


def int_param(
    params: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    """A query parameter as an int within bounds; a 400 that says which bounds otherwise."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_request(f"{name} must be an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise _bad_request(f"{name} must be {bounds}, got {value}")
    return value


def _page_size(params: Mapping[str, str], name: str) -> int:
    return int_param(params, name, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)


Page = tuple[Any, dict[str, str], int]  # (body, extra headers, records in it)


def _page_number(store: ResourceStore, start: int, request: Request) -> Page:
    params = request.query_params
    page, per_page = int_param(params, "page", 1, 1), _page_size(params, "per_page")
    total = len(store.keys) - start
    items = store.window(start + (page - 1) * per_page, per_page)
    meta = {"page": page, "per_page": per_page, "total": total, "total_pages": math.ceil(total / per_page)}
    return {"data": {"items": items}, "meta": meta}, {}, len(items)


def _offset_limit(store: ResourceStore, start: int, request: Request) -> Page:
    params = request.query_params
    offset, limit = int_param(params, "offset", 0, 0), _page_size(params, "limit")
    items = store.window(start + offset, limit)
    body = {"items": items, "offset": offset, "limit": limit, "total": len(store.keys) - start}
    return body, {}, len(items)


def _keyset(store: ResourceStore, start: int, params: Mapping[str, str]) -> tuple[list[Any], str | None, int]:
    """(records, cursor of the next page or None, limit) for the cursor and next-URL styles."""
    limit = _page_size(params, "limit")
    begin = start
    if params.get("cursor"):
        try:
            begin = max(start, store.after(decode_cursor(params["cursor"])))
        except ValueError:
            raise _bad_request("invalid cursor: pass next_cursor from the previous page unchanged") from None
    items = store.window(begin, limit)
    more = begin + limit < len(store.keys)
    return items, (encode_cursor(items[-1]["updated_at"], items[-1]["id"]) if more else None), limit


def _cursor_token(store: ResourceStore, start: int, request: Request) -> Page:
    items, cursor, _ = _keyset(store, start, request.query_params)
    return {"results": items, "next_cursor": cursor}, {}, len(items)


def _next_url(store: ResourceStore, start: int, request: Request) -> Page:
    items, cursor, limit = _keyset(store, start, request.query_params)
    next_url = str(request.url.include_query_params(limit=limit, cursor=cursor)) if cursor else None
    return {"records": items, "links": {"next": next_url}}, {}, len(items)


def _link_header(store: ResourceStore, start: int, request: Request) -> Page:
    params = request.query_params
    page, per_page = int_param(params, "page", 1, 1), _page_size(params, "per_page")
    total = len(store.keys) - start
    total_pages = math.ceil(total / per_page)
    items = store.window(start + (page - 1) * per_page, per_page)
    headers = {"X-Total-Count": str(total)}
    if page < total_pages:

        def url(number: int) -> str:
            return str(request.url.include_query_params(page=number, per_page=per_page))

        headers["Link"] = (
            f'<{url(page + 1)}>; rel="next", <{url(1)}>; rel="first", <{url(total_pages)}>; rel="last"'
        )
    return items, headers, len(items)


PAGINATORS: dict[str, Callable[[ResourceStore, int, Request], Page]] = {
    "page": _page_number,
    "offset": _offset_limit,
    "cursor": _cursor_token,
    "next": _next_url,
    "link": _link_header,
}


async def _fault_response(fault: Fault) -> Response | None:
    """The answer a fault replaces the page with (None: answer normally, after a timeout's delay)."""
    if fault.kind == "500":
        return ApiError(500, "internal_error", "injected fault").response()
    if fault.kind == "429":
        return ApiError(
            429, "rate_limited", "injected fault", {"Retry-After": str(fault.retry_after)}
        ).response()
    if fault.kind == "timeout":
        await asyncio.sleep(fault.delay_s)
    return None


async def list_records(state: CrmState, style: str, resource: str, request: Request) -> Response:
    """One page of ``resource`` in ``style``, after any pending fault for this request."""
    store = state.store(resource)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    fault = state.take_fault(target)
    if fault is not None:
        early = await _fault_response(fault)
        if early is not None:
            return early
    since = request.query_params.get("updated_since")
    try:
        start = store.start(since_key(since) if since else None)
    except ValueError:
        raise _bad_request(
            "updated_since must be an ISO-8601 timestamp such as 2026-01-05T10:00:00Z"
        ) from None
    body, headers, count = PAGINATORS[style](store, start, request)
    response = JSONResponse(body, headers=headers)
    if fault is not None and fault.kind == "malformed":
        cut = bytes(response.body)[: len(response.body) // 2]  # half a JSON document never parses
        return Response(cut, status_code=200, media_type="application/json", headers=headers)
    state.stats.records_served += count
    return response


# --- writes -----------------------------------------------------------------------------------------------


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise _bad_request("the body must be JSON") from None
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    return body


async def _token_form(request: Request) -> dict[str, str]:
    """The token request's parameters: a form body as the RFC says, or JSON as some clients send."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = json.loads(raw)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return {key: values[0] for key, values in parse_qs(raw.decode(errors="replace")).items()}


async def _body_as(model: type[ModelT], request: Request) -> ModelT:
    """The request's JSON body validated by ``model``; a 400 naming each problem otherwise."""
    try:
        return model.model_validate(await _json_object(request))
    except ValidationError as exc:
        raise _bad_request(_validation_detail(exc)) from None


def _fields(resource: str, body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """The writable fields in ``body`` (server-owned id/created_at/updated_at are ignored)."""
    try:
        model = FIELDS[resource].model_validate({k: v for k, v in body.items() if k not in SERVER_FIELDS})
    except ValidationError as exc:
        raise _bad_request(_validation_detail(exc)) from None
    return model.model_dump(mode="json", exclude_unset=partial)


def _record(record_id: int, fields: dict[str, Any], updated_at: str, created_at: str) -> dict[str, Any]:
    return {"id": record_id, **fields, "updated_at": updated_at, "created_at": created_at}


def _missing(resource: str, record_id: int) -> ApiError:
    return ApiError(404, "not_found", f"no {SINGULAR[resource]} with id {record_id}")


# --- the app ----------------------------------------------------------------------------------------------


def create_app(settings: CrmSettings | None = None) -> FastAPI:
    """The CRM app with fresh seeded state (``app.state.crm``)."""
    state = CrmState(settings or CrmSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = FastAPI(title="Demo CRM", description="A test double of a SaaS CRM API.", lifespan=lifespan)
    app.state.crm = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _bad_request(_validation_detail(exc)).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error = "not_found" if exc.status_code == 404 else "http_error"
        return ApiError(exc.status_code, error, str(exc.detail), dict(exc.headers or {})).response()

    @app.middleware("http")
    async def _api_gate(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if not request.url.path.startswith("/api/"):
            return await call_next(request)
        state.stats.requests += 1
        try:
            response = await _gate(state, request) or await call_next(request)
        except Exception:
            state.stats.by_status["500"] += 1
            raise
        state.stats.by_status[str(response.status_code)] += 1
        return response

    _add_api_routes(app, state)
    _add_admin_routes(app, state)
    _add_payment_routes(app, state, Payments())
    _add_sms_routes(app, SmsOutbox())
    return app


async def _gate(state: CrmState, request: Request) -> Response | None:
    """Latency, rate limit, auth and random errors for every /api request; None lets it through."""
    config = state.config
    if config.latency_ms:
        await asyncio.sleep(config.latency_ms / 1000)
    if state.bucket is not None:
        wait = state.bucket.acquire()
        if wait:
            retry_after = str(max(1, math.ceil(wait)))
            detail = f"more than {config.rate_limit_per_second:g} requests per second"
            return ApiError(429, "rate_limited", detail, {"Retry-After": retry_after}).response()
    try:
        state.authenticate(request.headers)
    except ApiError as exc:
        return exc.response()
    if config.error_rate and state.rng.random() < config.error_rate:
        return ApiError(500, "internal_error", "random failure (error_rate)").response()
    return None


def _add_api_routes(app: FastAPI, state: CrmState) -> None:
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/oauth/token")
    async def oauth_token(request: Request) -> Response:
        """OAuth2 client credentials: a form body, client id and secret in it or in HTTP Basic auth."""
        state.stats.token_requests += 1
        form = await _token_form(request)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client_id, client_secret = _basic_credentials(value.strip())
        try:
            state.check_client(client_id, client_secret)
            if form.get("grant_type") != "client_credentials":
                raise ApiError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        except ApiError as exc:
            return exc.response()
        token = state.issue_token()
        return JSONResponse(token, headers={"Cache-Control": "no-store"})

    _add_subscription_routes(app, state)
    for style in PAGINATORS:
        _add_list_route(app, state, style)
    _add_record_routes(app, state)
    _add_inbound_route(app, state)


def _add_subscription_routes(app: FastAPI, state: CrmState) -> None:
    @app.get("/api/webhooks/subscriptions")
    async def list_subscriptions() -> list[dict[str, Any]]:
        return [_public(sub) for sub in state.subscriptions.values()]

    @app.post("/api/webhooks/subscriptions", status_code=201)
    async def subscribe(request: Request) -> dict[str, Any]:
        sub = (await _body_as(SubscriptionIn, request)).model_dump()
        sub["id"] = f"sub_{uuid.uuid4().hex[:12]}"
        state.subscriptions[sub["id"]] = sub
        return _public(sub)

    @app.delete("/api/webhooks/subscriptions/{sub_id}", status_code=204)
    async def unsubscribe(sub_id: str) -> Response:
        if state.subscriptions.pop(sub_id, None) is None:
            raise ApiError(404, "not_found", "no such subscription")
        return Response(status_code=204)


def _add_record_routes(app: FastAPI, state: CrmState) -> None:
    @app.get("/api/{resource}/{record_id:int}")
    async def get_record(resource: str, record_id: int) -> Response:
        record = state.store(resource).records.get(record_id)
        if record is None:
            raise _missing(resource, record_id)
        return JSONResponse(record)

    @app.post("/api/{resource}", status_code=201)
    async def create_record(resource: str, request: Request) -> Response:
        store = state.store(resource)
        fields = _fields(resource, await _json_object(request), partial=False)
        now = store.next_timestamp()
        record = _record(store.next_id, fields, now, now)
        store.save(record)
        state.emit(resource, "created", record)
        return JSONResponse(record, status_code=201)

    @app.patch("/api/{resource}/{record_id:int}")
    async def patch_record(resource: str, record_id: int, request: Request) -> Response:
        store = state.store(resource)
        old = store.records.get(record_id)
        if old is None:
            raise _missing(resource, record_id)
        changes = _fields(resource, await _json_object(request), partial=True)
        record = {**old, **changes, "updated_at": store.next_timestamp()}
        store.save(record)
        state.emit(resource, "updated", record)
        return JSONResponse(record)

    @app.put("/api/{resource}/{record_id:int}")
    async def put_record(resource: str, record_id: int, request: Request) -> Response:
        store = state.store(resource)
        if record_id < 1:
            raise _bad_request("ids start at 1")
        fields = _fields(resource, await _json_object(request), partial=False)
        old = store.records.get(record_id)
        now = store.next_timestamp()
        record = _record(record_id, fields, now, old["created_at"] if old else now)
        store.save(record)
        state.emit(resource, "updated" if old else "created", record)
        return JSONResponse(record, status_code=200 if old else 201)

    @app.delete("/api/{resource}/{record_id:int}", status_code=204)
    async def delete_record(resource: str, record_id: int) -> Response:
        store = state.store(resource)
        record = store.delete(record_id)
        if record is None:
            raise _missing(resource, record_id)
        state.emit(resource, "deleted", record)
        return Response(status_code=204)


def _add_inbound_route(app: FastAPI, state: CrmState) -> None:
    async def inbound(name: str, request: Request) -> Response:
        """Record a delivery; answer 202, or the next status queued by POST /admin/inbound/{name}/responses."""
        body = await request.body()
        queued = state.inbound_responses.get(name)
        status = queued.pop(0) if queued else 202
        state.inbound.setdefault(name, []).append(_inbound_entry(request, body, status))
        return JSONResponse({"received": True}, status_code=status)

    for method in ("POST", "PUT", "PATCH"):  # one route each: OpenAPI wants an operation id per method
        app.add_api_route(
            "/inbound/{name}", inbound, methods=[method], status_code=202, name=f"inbound_{method.lower()}"
        )


def _add_list_route(app: FastAPI, state: CrmState, style: str) -> None:
    async def list_endpoint(resource: str, request: Request) -> Response:
        return await list_records(state, style, resource, request)

    app.add_api_route(f"/api/{style}/{{resource}}", list_endpoint, methods=["GET"], name=f"list_{style}")


def _public(subscription: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in subscription.items() if key != "secret"}


def _inbound_entry(request: Request, body: bytes, status: int) -> dict[str, Any]:
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode(), "base64"
    try:
        parsed = json.loads(body) if encoding == "utf-8" and body else None
    except ValueError:
        parsed = None
    return {
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": dict(request.headers),
        "body": text,
        "body_encoding": encoding,
        "json": parsed,
        "status": status,
        "received_at": time.time(),
    }


def _add_admin_routes(app: FastAPI, state: CrmState) -> None:
    @app.get("/admin/config")
    async def get_config() -> dict[str, Any]:
        return asdict(state.config)

    @app.post("/admin/config")
    async def set_config(request: Request) -> dict[str, Any]:
        update = await _body_as(ConfigUpdate, request)
        state.update_config(update)
        return asdict(state.config)

    @app.get("/admin/faults")
    async def get_faults() -> list[dict[str, Any]]:
        return [asdict(fault) for fault in state.faults]

    @app.post("/admin/faults")
    async def add_fault(request: Request) -> list[dict[str, Any]]:
        state.faults.append(Fault(**(await _body_as(FaultIn, request)).model_dump()))
        return [asdict(fault) for fault in state.faults]

    @app.delete("/admin/faults")
    async def clear_faults() -> list[dict[str, Any]]:
        state.faults.clear()
        return []

    @app.post("/admin/expire-tokens")
    async def expire_tokens() -> dict[str, int]:
        for token in state.tokens:
            state.tokens[token] = 0.0
        return {"expired": len(state.tokens)}

    @app.get("/admin/stats")
    async def get_stats() -> dict[str, Any]:
        return state.stats.as_dict()

    @app.post("/admin/stats/reset")
    async def reset_stats() -> dict[str, Any]:
        state.stats = Stats()
        return state.stats.as_dict()

    @app.post("/admin/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"status": "ok", "counts": {name: len(store.records) for name, store in state.stores.items()}}

    _add_admin_helper_routes(app, state)


def _add_admin_helper_routes(app: FastAPI, state: CrmState) -> None:
    """The inbound sink's and the webhook sender's admin side."""

    @app.get("/admin/inbound/{name}")
    async def get_inbound(name: str) -> list[dict[str, Any]]:
        return state.inbound.get(name, [])

    @app.delete("/admin/inbound/{name}")
    async def clear_inbound(name: str) -> dict[str, int]:
        return {"cleared": len(state.inbound.pop(name, []))}

    @app.post("/admin/inbound/{name}/responses")
    async def queue_inbound_responses(name: str, request: Request) -> dict[str, Any]:
        """Statuses the sink answers its next deliveries with (then 202 again), to test senders' retries."""
        statuses = (await _body_as(InboundResponsesIn, request)).statuses
        state.inbound_responses.setdefault(name, []).extend(statuses)
        return {"queued": state.inbound_responses[name]}

    @app.post("/admin/webhooks/send")
    async def send_webhook(request: Request) -> dict[str, Any]:
        spec = await _body_as(WebhookSendIn, request)
        msg_id = spec.msg_id or f"msg_{uuid.uuid4().hex}"
        event_type = spec.payload.get("type") if isinstance(spec.payload, dict) else None
        entry = await state.send_webhook(
            spec.model_dump(), spec.payload, msg_id, timestamp=spec.timestamp, event_type=event_type
        )
        return {"status": entry["status"], "msg_id": msg_id, "error": entry["error"]}

    @app.get("/admin/webhooks/log")
    async def webhook_log() -> list[dict[str, Any]]:
        return state.webhook_log

    @app.get("/admin/webhooks/pending")
    async def webhooks_pending() -> dict[str, int]:
        # Event deliveries still sending or waiting to retry: 0 is a test's positive sign that every
        # event of the writes so far has had its last attempt (rather than sleeping and hoping).
        return {"pending": len(state.tasks)}


# --- payments and fulfilment (the synchronous "orders" example) -------------------------------------------

# Test card tokens, as payment processors offer them: the good ones are charged, the others declined with
# the processor's reason (Stripe-like error bodies), so a caller's flow can show the reason to its caller.
PAYMENT_TOKENS: dict[str, tuple[str, str] | None] = {
    "tok_visa": None,
    "tok_mastercard": None,
    "tok_declined": ("generic_decline", "The card was declined by its issuer."),
    "tok_insufficient_funds": ("insufficient_funds", "The card has insufficient funds."),
    "tok_expired": ("expired_card", "The card has expired."),
}
DEFAULT_PAYMENT_LIMIT = Decimal("1000.00")
DELIVERY_DAYS = 3


class ChargeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payment_token: str = Field(min_length=1, max_length=100)
    reference: str | None = Field(None, max_length=100)
    description: str | None = Field(None, max_length=500)


class FulfilmentItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=60)
    quantity: int = Field(ge=1, le=10_000)


class FulfilmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(min_length=1, max_length=100)
    charge_id: str = Field(min_length=1, max_length=100)
    items: list[FulfilmentItem] = Field(min_length=1)
    ship_to: dict[str, Any] | None = None


class PaymentsConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: Decimal = Field(gt=0)


@dataclass
class Payments:
    """Charges, fulfilments and idempotency keys of the payment and warehouse endpoints (``/admin/payments``)."""

    limit: Decimal = DEFAULT_PAYMENT_LIMIT
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    fulfilments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By order id: an order is fulfilled once, a repeat gets the same fulfilment."""
    replies: dict[tuple[str, str], tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    """(endpoint, Idempotency-Key) -> (request fingerprint, status, body) of the first answer."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "limit": str(self.limit),
            "charges": list(self.charges.values()),
            "fulfilments": list(self.fulfilments.values()),
        }


def charge_decision(charge: ChargeIn, limit: Decimal) -> tuple[str, str] | None:
    """(decline_code, message) when the charge is declined, None when it is approved."""
    if charge.payment_token not in PAYMENT_TOKENS:
        return "invalid_token", f"Unknown payment token; test tokens: {', '.join(PAYMENT_TOKENS)}."
    declined = PAYMENT_TOKENS[charge.payment_token]
    if declined is not None:
        return declined
    if charge.amount > limit:
        return "over_limit", f"The amount is over the card's limit of {limit} {charge.currency}."
    return None


def _card_error(status: int, code: str, decline_code: str | None, message: str) -> JSONResponse:
    error = {"type": "card_error", "code": code, "message": message}
    if decline_code:
        error["decline_code"] = decline_code
    return JSONResponse({"error": error}, status_code=status)


def _replayed(
    payments: Payments, endpoint: str, request: Request, body: bytes
) -> tuple[JSONResponse | None, tuple[str, str] | None, str]:
    """(the stored answer to repeat | None, the key to store the answer under, the request's fingerprint)."""
    key = request.headers.get("idempotency-key")
    fingerprint = hashlib.sha256(body).hexdigest()
    if not key:
        return None, None, fingerprint
    stored = payments.replies.get((endpoint, key))
    if stored is None:
        return None, (endpoint, key), fingerprint
    if stored[0] != fingerprint:
        conflict = {"error": {"type": "idempotency_error", "message": "Keys are for one request body only."}}
        return JSONResponse(conflict, status_code=409), None, fingerprint
    return (
        JSONResponse(stored[2], status_code=stored[1], headers={"Idempotent-Replayed": "true"}),
        None,
        fingerprint,
    )


async def _payment_fault(state: CrmState, request: Request) -> Response | None:
    fault = state.take_fault(request.url.path)
    return await _fault_response(fault) if fault is not None else None


async def create_charge(state: CrmState, payments: Payments, request: Request) -> Response:
    """Charge a test card token; 402 with the processor's reason when declined. Honours Idempotency-Key."""
    early = await _payment_fault(state, request)
    if early is not None:
        return early
    raw = await request.body()
    replay, store_key, fingerprint = _replayed(payments, "charges", request, raw)
    if replay is not None:
        return replay
    charge = await _body_as(ChargeIn, request)
    declined = charge_decision(charge, payments.limit)
    if declined is not None:
        error = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": declined[0],
            "message": declined[1],
        }
        status, body = 402, {"error": error}
    else:
        charge_id = f"ch_{uuid.uuid4().hex[:16]}"
        status, body = (
            201,
            {
                "id": charge_id,
                "status": "succeeded",
                "amount": str(charge.amount.quantize(Decimal("0.01"))),
                "currency": charge.currency,
                "reference": charge.reference,
                "created_at": format_ts(int(time.time())),
            },
        )
        payments.charges[charge_id] = body
    if store_key is not None:
        payments.replies[store_key] = (fingerprint, status, body)
    return JSONResponse(body, status_code=status)


async def create_fulfilment(state: CrmState, payments: Payments, request: Request) -> Response:
    """Ship a paid order: 409 unless its charge succeeded; an order already fulfilled gets the same answer."""
    early = await _payment_fault(state, request)
    if early is not None:
        return early
    order = await _body_as(FulfilmentIn, request)
    existing = payments.fulfilments.get(order.order_id)
    if existing is not None:
        return JSONResponse(existing, status_code=200)
    charge = payments.charges.get(order.charge_id)
    if charge is None or charge["status"] != "succeeded":
        message = "The order's charge does not exist or did not succeed."
        error = {"type": "invalid_request", "code": "charge_not_paid", "message": message}
        return JSONResponse({"error": error}, status_code=409)
    now = int(time.time())
    fulfilment = {
        "id": f"ful_{uuid.uuid4().hex[:16]}",
        "status": "created",
        "order_id": order.order_id,
        "charge_id": order.charge_id,
        "items": [item.model_dump() for item in order.items],
        "ship_to": order.ship_to,
        "eta": time.strftime("%Y-%m-%d", time.gmtime(now + DELIVERY_DAYS * 86400)),
        "created_at": format_ts(now),
    }
    payments.fulfilments[order.order_id] = fulfilment
    return JSONResponse(fulfilment, status_code=201)


def _add_payment_routes(app: FastAPI, state: CrmState, payments: Payments) -> None:
    """A payment processor and a warehouse, for the synchronous orders example (auth as for /api)."""

    @app.post("/api/payments/charges", status_code=201)
    async def post_charge(request: Request) -> Response:
        return await create_charge(state, payments, request)

    @app.get("/api/payments/charges/{charge_id}")
    async def get_charge(charge_id: str) -> Response:
        charge = payments.charges.get(charge_id)
        if charge is None:
            return _card_error(404, "resource_missing", None, "No such charge.")
        return JSONResponse(charge)

    @app.post("/api/warehouse/fulfilments", status_code=201)
    async def post_fulfilment(request: Request) -> Response:
        return await create_fulfilment(state, payments, request)

    @app.get("/admin/payments")
    async def get_payments() -> dict[str, Any]:
        return payments.as_dict()

    @app.post("/admin/payments")
    async def configure_payments(request: Request) -> dict[str, Any]:
        """Set the card limit above which charges are declined, e.g. ``{"limit": "500.00"}``."""
        payments.limit = (await _body_as(PaymentsConfigIn, request)).limit
        return payments.as_dict()

    @app.delete("/admin/payments")
    async def reset_payments() -> dict[str, Any]:
        payments.limit = DEFAULT_PAYMENT_LIMIT
        payments.charges.clear()
        payments.fulfilments.clear()
        payments.replies.clear()
        return payments.as_dict()


# --- SMS (a Twilio-compatible Messages API, for the deliver step's sms target) ---------------------------

SMS_ACCOUNT_SID = "AC" + "d3m0" * 8  # 34 characters, like a Twilio account SID
SMS_AUTH_TOKEN = "demo-sms-token"
SMS_MAX_BODY = 1600  # Twilio's limit for a concatenated message
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


@dataclass
class SmsOutbox:
    """Messages accepted by the SMS stand-in (``/admin/sms``) and its Idempotency-Key answers."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def sms_reply(
    outbox: SmsOutbox, account_sid: str, authorization: str, body: bytes, key: str | None
) -> JSONResponse:
    """Twilio's answers: 401 (code 20003) for other credentials, 400 for a missing or non-E.164 number
    (21211 To, 21212 From), an empty body (21602) or one over 1600 characters (21617), else 201 with the
    message resource; a repeated Idempotency-Key gets the first answer again."""
    user, password = _basic_credentials(authorization.removeprefix("Basic ").strip())
    if (
        not authorization.startswith("Basic ")
        or not _same(user or "", SMS_ACCOUNT_SID)
        or not _same(password or "", SMS_AUTH_TOKEN)
        or account_sid != SMS_ACCOUNT_SID
    ):
        return _twilio_error(401, 20003, "Authenticate")
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace")).items()}
    fingerprint = hashlib.sha256(body).hexdigest()
    if key and key in outbox.replies and outbox.replies[key][0] == fingerprint:
        return JSONResponse(outbox.replies[key][1], status_code=201, headers={"Idempotent-Replayed": "true"})
    to, sender, text = form.get("To", ""), form.get("From", ""), form.get("Body", "")
    if not _E164.match(to):
        return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not _E164.match(sender):
        return _twilio_error(400, 21212, f"The 'From' number {sender} is not a valid phone number.")
    if not text:
        return _twilio_error(400, 21602, "Message body is required.")
    if len(text) > SMS_MAX_BODY:
        return _twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    message = {
        "sid": "SM" + uuid.uuid4().hex,
        "account_sid": account_sid,
        "to": to,
        "from": sender,
        "body": text,
        "status": "queued",
        "date_created": format_ts(int(time.time())),
    }
    outbox.messages.append(message)
    if key:
        outbox.replies[key] = (fingerprint, message)
    return JSONResponse(message, status_code=201)


def _add_sms_routes(app: FastAPI, outbox: SmsOutbox) -> None:
    @app.post("/sms/2010-04-01/Accounts/{account_sid}/Messages.json", status_code=201)
    async def post_sms(account_sid: str, request: Request) -> Response:
        return sms_reply(
            outbox,
            account_sid,
            request.headers.get("authorization", ""),
            await request.body(),
            request.headers.get("idempotency-key"),
        )

    @app.get("/admin/sms")
    async def list_sms() -> list[dict[str, Any]]:
        return outbox.messages

    @app.delete("/admin/sms")
    async def reset_sms() -> list[dict[str, Any]]:
        outbox.messages.clear()
        outbox.replies.clear()
        return outbox.messages


# --- command line -----------------------------------------------------------------------------------------


def _anchor(text: str) -> int:
    try:
        return calendar.timegm(parse_ts(text).timetuple())
    except ValueError:
        raise argparse.ArgumentTypeError("expected an ISO-8601 time such as 2026-01-01T00:00:00Z") from None


def parse_args(argv: list[str] | None = None) -> tuple[CrmSettings, argparse.Namespace]:
    """Settings and server options (host, port, logging) from the command line."""
    d = CrmSettings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8001)
    add("--contacts", type=int, default=d.contacts, help="seeded contacts (default %(default)s)")
    add("--companies", type=int, default=d.companies, help="seeded companies (default %(default)s)")
    add("--invoices", type=int, default=d.invoices, help="seeded invoices (default %(default)s)")
    add("--seed", type=int, default=d.seed, help="random seed of the data and of --error-rate")
    add(
        "--anchor",
        type=_anchor,
        default=None,
        help="ISO time seeded dates lie before (default: today 00:00Z)",
    )
    add("--api-key", default=d.api_key)
    add("--bearer-token", default=d.bearer_token)
    add("--basic-user", default=d.basic_user)
    add("--basic-password", default=d.basic_password)
    add("--client-id", default=d.client_id, help="OAuth2 client id")
    add("--client-secret", default=d.client_secret, help="OAuth2 client secret")
    add("--token-ttl", type=int, default=d.token_ttl, help="OAuth2 token lifetime in seconds")
    add("--latency-ms", type=float, default=0.0, help="delay of every /api request")
    add("--rate-limit-per-second", type=float, default=0.0, help="0 = no limit")
    add("--error-rate", type=float, default=0.0, help="fraction of /api requests answered 500")
    add("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    add("--no-access-log", action="store_true", help="no line per request (for benchmarks)")
    args = parser.parse_args(argv)
    for name in ("contacts", "companies", "invoices"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0")
    if not 0 <= args.error_rate <= 1:
        parser.error("--error-rate must be between 0 and 1")
    settings = CrmSettings(
        contacts=args.contacts,
        companies=args.companies,
        invoices=args.invoices,
        seed=args.seed,
        anchor=args.anchor,
        api_key=args.api_key,
        bearer_token=args.bearer_token,
        basic_user=args.basic_user,
        basic_password=args.basic_password,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl=args.token_ttl,
        latency_ms=args.latency_ms,
        rate_limit_per_second=args.rate_limit_per_second or None,
        error_rate=args.error_rate,
    )
    return settings, args


def main(argv: list[str] | None = None) -> None:
    settings, args = parse_args(argv)
    started = time.monotonic()
    app = create_app(settings)
    counts = ", ".join(f"{len(store.records)} {name}" for name, store in app.state.crm.stores.items())
    print(
        f"demo CRM on http://{args.host}:{args.port} ({counts}, seeded in {time.monotonic() - started:.2f}s);"
        f" try: curl -H 'X-API-Key: {settings.api_key}' http://{args.host}:{args.port}/api/page/contacts",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=1,  # a request held by a "timeout" fault must not delay the exit
    )


if __name__ == "__main__":
    main()
