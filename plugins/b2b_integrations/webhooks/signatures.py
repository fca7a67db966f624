"""Verify that a webhook request comes from the sender holding the customer's secret.

One function per scheme, all pure (headers, body, secret, clock in; a verdict out) so every rule is
testable without a server. Comparisons are constant-time (``hmac.compare_digest``). Schemes, as the
template's ``trigger.signature``:

* ``standard_webhooks`` (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` (several, space
  separated, during key rotation); the secret is ``whsec_<base64 key>``;
* ``github``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``, id in ``X-GitHub-Delivery``
  (GitHub signs no timestamp, so no staleness check is possible);
* ``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>``;
* ``shared_secret``: the secret itself in ``X-Webhook-Secret`` (for senders that cannot sign);
* ``none``: no check (only for trusted networks; ``validate`` warns).

The message id, used to drop redeliveries, is the scheme's id header when there is one, else the
sha256 of the body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TOLERANCE_SECONDS = 300
SHARED_SECRET_HEADER = "x-webhook-secret"


class SignatureRejected(Exception):
    """The request is not from the expected sender; ``status`` is the HTTP answer (401 or 400)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Verified:
    message_id: str
    timestamp: int | None
    """The sender's signed timestamp (unix seconds), when the scheme has one."""


def verify(
    scheme: str,
    secret: str | None,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> Verified:
    """Check ``body`` and ``headers`` (names in any case) against ``secret``; raise :class:`SignatureRejected`."""
    lower = {k.lower(): v for k, v in headers.items()}
    if scheme == "none":
        return Verified(_header_id(lower, body), None)
    if not secret:
        raise SignatureRejected("no signing secret is configured for this flow", status=401)
    checks = {
        "standard_webhooks": _standard,
        "github": _github,
        "stripe": _stripe,
        "shared_secret": _shared,
    }
    if scheme not in checks:
        raise ValueError(f"unknown signature scheme {scheme!r}")
    return checks[scheme](secret, lower, body, now, tolerance)


def _standard(secret: str, headers: dict[str, str], body: bytes, now: float, tolerance: int) -> Verified:
    msg_id, stamp, signatures = (
        headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not msg_id or not stamp or not signatures:
        raise SignatureRejected("missing webhook-id, webhook-timestamp or webhook-signature header")
    timestamp = _fresh(stamp, now, tolerance)
    expected = base64.b64encode(
        _hmac(_standard_key(secret), f"{msg_id}.{timestamp}.".encode() + body)
    ).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return Verified(msg_id, timestamp)
    raise SignatureRejected("webhook-signature does not match")


def sign_standard(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for an outgoing request (what :func:`verify` and the
    ``standardwebhooks`` library accept): ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""
    signature = base64.b64encode(_hmac(_standard_key(secret), f"{message_id}.{timestamp}.".encode() + body))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature.decode()}",
    }


def _standard_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass  # not base64 after all: use the text, as the sender must have
    return secret.encode()


def _github(secret: str, headers: dict[str, str], body: bytes, now: float, tolerance: int) -> Verified:
    signature = headers.get("x-hub-signature-256", "")
    if not signature.startswith("sha256="):
        raise SignatureRejected("missing or malformed X-Hub-Signature-256 header")
    expected = _hmac(secret.encode(), body).hex()
    if not hmac.compare_digest(signature.removeprefix("sha256=").encode(), expected.encode()):
        raise SignatureRejected("X-Hub-Signature-256 does not match")
    return Verified(headers.get("x-github-delivery") or _body_id(body), None)


def _stripe(secret: str, headers: dict[str, str], body: bytes, now: float, tolerance: int) -> Verified:
    parts: dict[str, list[str]] = {}
    for item in headers.get("stripe-signature", "").split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    if "t" not in parts or "v1" not in parts:
        raise SignatureRejected("missing or malformed Stripe-Signature header")
    timestamp = _fresh(parts["t"][0], now, tolerance)
    expected = _hmac(secret.encode(), f"{timestamp}.".encode() + body).hex().encode()
    if not any(hmac.compare_digest(value.encode(), expected) for value in parts["v1"]):
        raise SignatureRejected("Stripe-Signature does not match")
    return Verified(headers.get("idempotency-key") or _body_id(body), timestamp)


def _shared(secret: str, headers: dict[str, str], body: bytes, now: float, tolerance: int) -> Verified:
    presented = headers.get(SHARED_SECRET_HEADER, "")
    if not hmac.compare_digest(presented.encode(), secret.encode()):
        raise SignatureRejected("X-Webhook-Secret does not match")
    return Verified(_header_id(headers, body), None)


def _fresh(stamp: str, now: float, tolerance: int) -> int:
    """The signed timestamp, if it is a whole number of seconds within ``tolerance`` of ``now``."""
    # Bounded before int(): Python refuses to convert over 4300 digits with a ValueError (a 500).
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SignatureRejected("the signature timestamp is not a unix time", status=400)
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise SignatureRejected(f"the signature timestamp is more than {tolerance} s from now", status=401)
    return timestamp


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _header_id(headers: dict[str, str], body: bytes) -> str:
    return headers.get("webhook-id") or headers.get("x-webhook-id") or _body_id(body)


def _body_id(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
