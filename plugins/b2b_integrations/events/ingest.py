"""From a publish request of our app to stored events: parse, route to the subscribed flows, store once.

Each event goes to the inbox of every subscribed customer flow (see ``events.routes``), deduplicated per
inbox by the event id, so our app may retry a publish freely. The answer, like the webhook receiver's,
comes only after the events are committed: 202 with what each event reached; 503 (``Retry-After``) when
some could not be stored, so the publisher retries (those already stored are then acknowledged as
duplicates); 400 with a ``reason`` for a body the shared JSON policy refuses
(:mod:`b2b_integrations.net.json_body`: not UTF-8/JSON, NaN or Infinity, integers outside int64, nesting
over 64 levels); 422 listing every envelope error.
"""

from __future__ import annotations

import json
from typing import Any

from b2b_integrations.events.envelope import EventRejected, parse_events
from b2b_integrations.events.routes import AppEventRoutes
from b2b_integrations.net.json_body import JsonRefused, parse_json
from b2b_integrations.webhooks.receiver import Answer, Limits, StoreUnavailable
from b2b_integrations.webhooks.store import Message, MetadataEventStore

RETRY_AFTER_SECONDS = "30"


def publish(
    body: bytes, content_type: str, routes: AppEventRoutes, store: MetadataEventStore, limits: Limits
) -> Answer:
    """The answer to one publish request (one event, a list, or ``{"events": [...]}``)."""
    if "json" not in content_type.lower():
        return Answer(415, {"error": "unsupported_media_type", "detail": "send application/json"})
    try:
        parsed = parse_json(body)
    except JsonRefused as e:
        return Answer(400, e.answer_body())
    try:
        events = parse_events(parsed)
    except EventRejected as e:
        return Answer(422, {"error": "invalid_events", "detail": e.errors})
    messages: list[Message] = []
    reached: list[list[str]] = []
    for event in events:
        payload = event.as_payload()
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        subscribers = routes.subscribers(event)
        reached.append([f"{s.customer_id}/{s.integration}/{s.flow}" for s in subscribers])
        messages.extend(
            Message(s, event.id, payload, text, inline=len(text) <= limits.inline_bytes) for s in subscribers
        )
    outcomes = store.store_many(messages) if messages else []
    failed = [o for o in outcomes if isinstance(o, StoreUnavailable)]
    if failed:
        return Answer(
            503,
            {"error": "unavailable", "detail": str(failed[0]), "stored": len(outcomes) - len(failed)},
            {"Retry-After": RETRY_AFTER_SECONDS},
        )
    answers: list[dict[str, Any]] = []
    position = 0
    for event, flows in zip(events, reached, strict=True):
        results = outcomes[position : position + len(flows)]
        position += len(flows)
        answers.append(
            {
                "id": event.id,
                "type": event.type,
                "flows": flows,
                "stored": sum(1 for r in results if r is True),
                "duplicates": sum(1 for r in results if r is False),
            }
        )
    return Answer(202, {"status": "accepted", "events": answers})
