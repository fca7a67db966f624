"""Which events of a run to deliver, in which order: pure, so ordering rules are testable without servers.

* An event already delivered to the target (a retried or re-run task) is not sent again.
* Events of the same key (e.g. the same contact) go out oldest first, one after another.
* An event older than the newest one already delivered for its key is *superseded*: sending it would
  overwrite a newer state at the receiver. It is recorded as such, never sent. This is also what makes a
  late replay of a dead-lettered event safe.
* With ``coalesce``, only the newest event per key in the batch is sent (receivers that want the latest
  state, not every intermediate one); the older ones are superseded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OutgoingEvent:
    event_id: str
    key: str
    occurred_at: str
    """Fixed-width UTC text (see events.envelope.normalize_instant): text order is time order."""
    payload: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class DeliveryPlan:
    lanes: list[list[OutgoingEvent]]
    """One lane per key, oldest first; lanes are independent (may go out in parallel)."""
    already_delivered: list[OutgoingEvent]
    superseded: list[OutgoingEvent]

    @property
    def to_send(self) -> int:
        return sum(len(lane) for lane in self.lanes)


def key_of(payload: Mapping[str, Any], path: str) -> str | None:
    """The value at a dotted path (``data.id``), as text; None when a part is missing."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value or value[part] is None:
            return None
        value = value[part]
    return str(value)


def plan_deliveries(
    events: Iterable[OutgoingEvent],
    delivered_ids: set[str],
    newest_delivered: Mapping[str, str],
    coalesce: bool = False,
) -> DeliveryPlan:
    """Split a run's events into lanes to send, those sent before, and those superseded."""
    by_key: dict[str, list[OutgoingEvent]] = {}
    already: list[OutgoingEvent] = []
    superseded: list[OutgoingEvent] = []
    seen: set[str] = set()
    for event in events:
        if event.event_id in seen:
            continue  # the same event twice in one batch (published twice, replayed): one delivery
        seen.add(event.event_id)
        if event.event_id in delivered_ids:
            already.append(event)
        elif event.key in newest_delivered and event.occurred_at < newest_delivered[event.key]:
            superseded.append(event)
        else:
            by_key.setdefault(event.key, []).append(event)
    lanes = []
    for key in sorted(by_key):
        lane = sorted(by_key[key], key=lambda e: (e.occurred_at, e.event_id))
        if coalesce and len(lane) > 1:
            superseded.extend(lane[:-1])
            lane = lane[-1:]
        lanes.append(lane)
    return DeliveryPlan(lanes=lanes, already_delivered=already, superseded=superseded)
