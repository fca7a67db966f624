"""Which customer flows subscribe to an app event: trigger ``app_event`` with the event's type, a filter
that matches its data, and not the integration the change came from.

Routing happens once, when the event is published: each subscribed flow gets the event on its own inbox
asset, so a customer's DAG wakes only for its own events and reads them with the same inbox machinery as
webhooks (position, batch, retry). Filter values may use ``${customer.*}`` and ``${config.*}``: they are
resolved per customer here, as the DAG factory resolves step options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2b_integrations.config.live import LiveProject, deployed_flows
from b2b_integrations.config.loader import Project
from b2b_integrations.config.references import resolve
from b2b_integrations.config.triggers import AppEventTrigger
from b2b_integrations.events.envelope import AppEvent


@dataclass(frozen=True)
class Subscription:
    """One customer flow's subscription; also the inbox its events go to."""

    customer_id: str
    integration: str
    flow: str
    asset_uri: str
    events: frozenset[str]
    filter: Mapping[str, Any]

    @property
    def origin(self) -> str:
        """How events caused by this integration for this customer name their origin."""
        return f"{self.customer_id}/{self.integration}"

    def wants(self, event: AppEvent) -> bool:
        return event.type in self.events and event.origin != self.origin and matches(self.filter, event.data)


def matches(filter: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    """Every filter key (a dotted path into ``data``) equals its value, or is one of its values (a list)."""
    for path, wanted in filter.items():
        value: Any = data
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return False
            value = value[part]
        if isinstance(wanted, list) and not isinstance(value, list):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def subscriptions_of(project: Project) -> dict[str, list[Subscription]]:
    """Event type -> the enabled flows of valid customer integrations subscribed to it."""
    from b2b_integrations.naming import inbox_asset_uri

    by_type: dict[str, list[Subscription]] = {}
    for deployed in deployed_flows(project):
        trigger = deployed.flow.trigger
        if not isinstance(trigger, AppEventTrigger):
            continue
        scopes = {
            "config": deployed.config,
            "customer": {"id": deployed.customer_id, "name": deployed.customer_name},
        }
        subscription = Subscription(
            customer_id=deployed.customer_id,
            integration=deployed.integration,
            flow=deployed.flow_name,
            asset_uri=inbox_asset_uri(deployed.customer_id, deployed.integration, deployed.flow_name),
            events=frozenset(trigger.events),
            filter=resolve(trigger.filter, scopes),
        )
        for event_type in subscription.events:
            by_type.setdefault(event_type, []).append(subscription)
    return by_type


class AppEventRoutes:
    """The subscribed flows of an event; re-reads the include folder when it changes. Thread-safe."""

    def __init__(self, include_dir: Path) -> None:
        self._project = LiveProject(include_dir, subscriptions_of)

    def subscribers(self, event: AppEvent) -> list[Subscription]:
        return [s for s in self._project.get().get(event.type, []) if s.wants(event)]
