"""From an HTTP request to a stored event: find the flow, check the signature and the body, store once.

Kept apart from FastAPI and from the database so each rule has one place: the route lookup, the secret
lookup and the store are passed in. The answers follow the issue of senders that retry, in this order:

* 413 over the size cap (the endpoint stops reading there, before it knows the route);
* 401 :data:`UNAUTHORIZED`, byte for byte the same, for an unknown customer, integration or flow and for
  a missing, bad or stale signature (or a malformed signature timestamp) on an existing one: without a
  valid signature nobody learns which customers and flows exist. 401 rather than 404 because it is true
  of both ("nothing here accepts this request's credentials") and a sender with a rotated or mistyped
  secret is not told the endpoint is gone. The precise reason is logged for the operator;
* 415 for a content type other than JSON, checked only after the signature (a forger learns nothing);
  GitHub's form-encoded deliveries (``application/x-www-form-urlencoded``, the JSON in the ``payload``
  field, the signature over the raw form body) are taken on ``github``-signed flows;
* 400 with a ``reason`` for a body the JSON policy refuses (:mod:`b2b_integrations.net.json_body`: not
  UTF-8/JSON, NaN or Infinity, integers outside int64, nesting over 64 levels, ``\\u0000``);
* 422 when the flow's schema refuses it;
* 503 (with ``Retry-After``) when the event cannot be stored or the signing secret cannot be read, so the
  sender tries again;
* 200 for a redelivery of a message already stored (acknowledged, not stored twice), 202 when stored;
  for an inactive flow (its instance deactivated, or its DAG paused) the 202 says ``"active": false`` and
  that the event is kept until activation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

from b2b_integrations.net.json_body import JsonRefused, parse_json
from b2b_integrations.webhooks.signatures import SignatureRejected, verify

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_INLINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class WebhookRoute:
    """One customer's webhook flow, as configured."""

    customer_id: str
    integration: str
    flow: str
    signature: str
    secret_conn_id: str | None
    payload_schema: dict[str, Any] | None
    asset_uri: str
    active: bool = True
    """False when the instance is deactivated or the DAG paused: events are kept for its activation."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class StoreUnavailable(Exception):
    """The event could not be stored (database down, consumer DAG not deployed yet)."""


class EventStore(Protocol):
    def store(self, route: WebhookRoute, message_id: str, payload: Any, body: bytes, inline: bool) -> bool:
        """Store the event once; False if this message id was stored before. Raise StoreUnavailable."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    inline_bytes: int = DEFAULT_INLINE_BYTES
    tolerance_seconds: int = 300


UNAUTHORIZED = Answer(
    401,
    {
        "error": "unauthorized",
        "detail": "no webhook endpoint here accepts this request's signature; check the URL and the secret",
    },
)
FORM = "application/x-www-form-urlencoded"
INACTIVE = "kept; processed when the integration is activated"


def receive(
    route: WebhookRoute | None,
    secret: Callable[[WebhookRoute], str | None],
    store: EventStore,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    limits: Limits = Limits(),
) -> Answer:
    """Decide the answer to one webhook request (see the module docstring)."""
    if len(body) > limits.max_bytes:
        return too_large(limits)
    if route is None:
        return UNAUTHORIZED
    where = f"{route.customer_id}/{route.integration}/{route.flow}"
    try:
        verified = verify(route.signature, secret(route), headers, body, now, limits.tolerance_seconds)
    except SignatureRejected as e:
        log.warning("Webhook for %s refused: %s", where, e.reason)
        return UNAUTHORIZED
    except StoreUnavailable as e:
        return Answer(503, {"error": "unavailable", "detail": str(e)}, {"Retry-After": "30"})
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == FORM and route.signature == "github":
        json_body = github_form_payload(body)
        if isinstance(json_body, Answer):
            return json_body
    elif media_type == "application/json" or media_type.endswith("+json"):
        json_body = body
    else:
        detail = "send application/json" + (f" or {FORM} (GitHub)" if route.signature == "github" else "")
        return Answer(415, {"error": "unsupported_media_type", "detail": detail})
    try:
        payload = parse_json(json_body)
    except JsonRefused as e:
        log.warning("Webhook %s for %s refused: %s", verified.message_id, where, e.detail)
        return Answer(400, e.answer_body())
    problems = schema_problems(payload, route.payload_schema)
    if problems:
        return Answer(422, {"error": "invalid_payload", "detail": problems})
    try:
        stored = store.store(
            route, verified.message_id, payload, json_body, inline=len(json_body) <= limits.inline_bytes
        )
    except StoreUnavailable as e:
        return Answer(503, {"error": "unavailable", "detail": str(e)}, {"Retry-After": "30"})
    if not stored:
        return Answer(200, {"status": "duplicate", "message_id": verified.message_id})
    return accepted(route, verified.message_id)


def accepted(route: WebhookRoute, message_id: str) -> Answer:
    """The 202 of a stored event; for a deactivated instance it says the event waits for activation."""
    if not route.active:
        return Answer(
            202, {"status": "accepted", "message_id": message_id, "active": False, "detail": INACTIVE}
        )
    return Answer(202, {"status": "accepted", "message_id": message_id})


def too_large(limits: Limits) -> Answer:
    """The answer to a body over the cap (also given by the endpoint, which stops reading there)."""
    return Answer(413, {"error": "too_large", "detail": f"the body is over {limits.max_bytes} bytes"})


def github_form_payload(body: bytes) -> bytes | Answer:
    """The JSON text of a GitHub form-encoded delivery (``payload=<url-encoded JSON>``), or the 400."""
    try:
        fields = parse_qs(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=1,
            errors="strict",
        )
    except ValueError:  # UnicodeDecodeError is one too
        fields = {}
    if list(fields) != ["payload"]:
        detail = f"a {FORM} body must have exactly one field, payload, holding the JSON"
        return Answer(400, {"error": "bad_form", "detail": detail})
    return fields["payload"][0].encode()


def schema_problems(payload: Any, schema: dict[str, Any] | None) -> list[str]:
    """Every JSON Schema violation, as 'path: message' (at most 20)."""
    if not schema:
        return []
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:20]]
