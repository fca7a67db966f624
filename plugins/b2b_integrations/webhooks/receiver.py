"""From an HTTP request to a stored event: find the flow, check the signature and the body, store once.

Kept apart from FastAPI and from the database so each rule has one place: the route lookup, the secret
lookup and the store are passed in. The answers follow the issue of senders that retry:

* 404 for an unknown customer, integration or flow, the same for all three (nothing to probe with);
* 401 for a bad or stale signature, 400 for a malformed signature timestamp or a body that is not JSON;
* 413 over the size cap, 415 for a content type other than JSON, 422 when the flow's schema refuses it;
* 503 (with ``Retry-After``) when the event cannot be stored, so the sender tries again;
* 200 for a redelivery of a message already stored (acknowledged, not stored twice), 202 when stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from b2b_integrations.webhooks.signatures import SignatureRejected, verify

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


NOT_FOUND = Answer(404, {"error": "not_found", "detail": "no webhook endpoint here"})


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
    if route is None:
        return NOT_FOUND
    if len(body) > limits.max_bytes:
        return too_large(limits)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        return Answer(415, {"error": "unsupported_media_type", "detail": "send application/json"})
    try:
        verified = verify(route.signature, secret(route), headers, body, now, limits.tolerance_seconds)
    except SignatureRejected as e:
        return Answer(e.status, {"error": "bad_signature", "detail": e.reason})
    except StoreUnavailable as e:
        return Answer(503, {"error": "unavailable", "detail": str(e)}, {"Retry-After": "30"})
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return Answer(400, {"error": "bad_json", "detail": f"the body is not JSON: {e}"})
    problems = schema_problems(payload, route.payload_schema)
    if problems:
        return Answer(422, {"error": "invalid_payload", "detail": problems})
    try:
        stored = store.store(
            route, verified.message_id, payload, body, inline=len(body) <= limits.inline_bytes
        )
    except StoreUnavailable as e:
        return Answer(503, {"error": "unavailable", "detail": str(e)}, {"Retry-After": "30"})
    if not stored:
        return Answer(200, {"status": "duplicate", "message_id": verified.message_id})
    return Answer(202, {"status": "accepted", "message_id": verified.message_id})


def too_large(limits: Limits) -> Answer:
    """The answer to a body over the cap (also given by the endpoint, which stops reading there)."""
    return Answer(413, {"error": "too_large", "detail": f"the body is over {limits.max_bytes} bytes"})


def schema_problems(payload: Any, schema: dict[str, Any] | None) -> list[str]:
    """Every JSON Schema violation, as 'path: message' (at most 20)."""
    if not schema:
        return []
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:20]]
