"""Which customer flows answer synchronous calls, read from the include folder (re-read when a file changes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2b_integrations.config.live import LiveProject, deployed_flows
from b2b_integrations.config.loader import Project
from b2b_integrations.config.triggers import SyncTrigger


@dataclass(frozen=True)
class SyncRoute:
    """One customer's synchronous flow, as configured."""

    customer_id: str
    integration: str
    flow: str
    dag_id: str
    steps: tuple[str, ...]
    """Task ids of the flow's steps, in order (the callback task is not one)."""
    result_step: str
    timeout_seconds: float
    max_timeout_seconds: float
    input_schema: dict[str, Any] | None
    callbacks: bool
    """Whether the flow signs callbacks (has a callback secret), so callers may ask for one."""


class SyncRoutes:
    """Looks up :class:`SyncRoute` by (customer, integration, flow); thread-safe."""

    def __init__(self, include_dir: Path) -> None:
        self.include_dir = include_dir
        self._routes = LiveProject(include_dir, sync_routes_of)

    def find(self, customer_id: str, integration: str, flow: str) -> SyncRoute | None:
        return self._routes.get().get((customer_id, integration, flow))


def sync_routes_of(project: Project) -> dict[tuple[str, str, str], SyncRoute]:
    """Every enabled sync flow of every valid customer integration."""
    from b2b_integrations.naming import dag_id_for

    routes = {}
    for deployed in deployed_flows(project):
        trigger = deployed.flow.trigger
        if not isinstance(trigger, SyncTrigger):
            continue
        steps = tuple(step.id for step in deployed.flow.steps)
        slot = trigger.callback_secret_connection
        key = (deployed.customer_id, deployed.integration, deployed.flow_name)
        routes[key] = SyncRoute(
            customer_id=deployed.customer_id,
            integration=deployed.integration,
            flow=deployed.flow_name,
            dag_id=dag_id_for(*key),
            steps=steps,
            result_step=trigger.result_step or steps[-1],
            timeout_seconds=trigger.timeout_seconds,
            max_timeout_seconds=trigger.max_timeout_seconds,
            input_schema=trigger.input_schema,
            callbacks=bool(slot and deployed.settings.connections.get(slot)),
        )
    return routes
