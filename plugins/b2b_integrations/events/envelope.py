"""The app-event envelope ``{type, id, occurred_at, data, origin?}``: parsed and checked in one place.

``id`` is the event's identity everywhere downstream: it deduplicates publishing retries, it is the
``webhook-id`` receivers see, and it keys the delivery ledger. ``occurred_at`` orders events of the same
record; it is kept as a UTC timestamp with fixed width (microseconds, ``+00:00``) so text order is time
order in every database. ``origin`` names the integration a change came from (``<customer>/<integration>``),
so that integration is not sent its own change back (echo suppression).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
MAX_ID_LENGTH = 200
MAX_EVENTS_PER_REQUEST = 1000


class EventRejected(ValueError):
    """The body is not a valid event or batch; ``errors`` lists every problem, each with its location."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class AppEvent:
    type: str
    id: str
    occurred_at: str
    """UTC, ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``."""
    data: dict[str, Any] = field(hash=False)
    origin: str | None = None

    def as_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": self.type,
            "id": self.id,
            "occurred_at": self.occurred_at,
            "data": self.data,
        }
        if self.origin is not None:
            payload["origin"] = self.origin
        return payload


def normalize_instant(value: str) -> str:
    """An ISO-8601 instant with a zone, as fixed-width UTC text; ValueError otherwise."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    if parsed.tzinfo is None:
        raise ValueError("has no time zone")
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")


def parse_events(body: Any) -> list[AppEvent]:
    """One event, a list of events, or ``{"events": [...]}``; raise :class:`EventRejected` listing all errors."""
    if isinstance(body, dict) and "events" in body and set(body) == {"events"}:
        body = body["events"]
    items = body if isinstance(body, list) else [body]
    where = (lambda i: f"events[{i}]") if isinstance(body, list) else (lambda i: "event")
    if not items:
        raise EventRejected(["no events in the body"])
    if len(items) > MAX_EVENTS_PER_REQUEST:
        raise EventRejected([f"{len(items)} events in one request; at most {MAX_EVENTS_PER_REQUEST}"])
    events: list[AppEvent] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        try:
            events.append(_parse_one(item))
        except EventRejected as e:
            # Field errors read "events[2].occurred_at: ..."; a wrong item type "events[2]: ...".
            errors.extend(
                f"{where(index)}{'' if error.startswith(':') else '.'}{error}" for error in e.errors
            )
    if errors:
        raise EventRejected(errors)
    return events


def _parse_one(item: Any) -> AppEvent:
    if not isinstance(item, dict):
        raise EventRejected([f": must be an object, got {type(item).__name__}"])
    errors = []
    unknown = sorted(set(item) - {"type", "id", "occurred_at", "data", "origin"})
    if unknown:
        errors.append(f"{unknown[0]}: unknown field (allowed: type, id, occurred_at, data, origin)")
    kind, event_id, occurred, data, origin = (
        item.get(k) for k in ("type", "id", "occurred_at", "data", "origin")
    )
    if not isinstance(kind, str) or not TYPE_PATTERN.match(kind):
        errors.append(f"type: must be dotted lower-case words like 'invoice.paid', got {kind!r}")
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_ID_LENGTH:
        errors.append(f"id: must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    instant = None
    if not isinstance(occurred, str):
        errors.append("occurred_at: required, an ISO-8601 time with a zone, e.g. 2026-11-29T08:00:00Z")
    else:
        try:
            instant = normalize_instant(occurred)
        except (ValueError, OverflowError) as e:  # overflow: year 1 or 9999 moved to UTC
            errors.append(f"occurred_at: {occurred!r} is not an ISO-8601 time with a zone ({e})")
    if not isinstance(data, dict):
        errors.append(f"data: must be an object, got {type(data).__name__}")
    if origin is not None and not isinstance(origin, str):
        errors.append("origin: must be a string like 'acme/crm_contacts'")
    if errors:
        raise EventRejected(errors)
    return AppEvent(type=kind, id=event_id, occurred_at=instant, data=data, origin=origin)  # type: ignore[arg-type]
