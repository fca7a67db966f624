"""Which customer flows take webhooks, read from the include folder and re-read when a file changes."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from b2b_integrations.config.live import LiveProject, deployed_flows
from b2b_integrations.config.loader import Project
from b2b_integrations.config.triggers import WebhookTrigger
from b2b_integrations.webhooks.receiver import StoreUnavailable, WebhookRoute

log = logging.getLogger(__name__)


def include_dir_for_api_server() -> Path:
    """B2B_INCLUDE_DIR, else include/ beside the DAGs folder (the layout this project ships)."""
    env = os.environ.get("B2B_INCLUDE_DIR")
    if env:
        return Path(env)
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")).resolve().parent / "include"


PAUSED_TTL_SECONDS = 5.0


class PausedDags:
    """Ids of our paused DAGs, read at most every ``ttl`` seconds: one query per few seconds, not one per
    webhook. A DAG paused by hand in Airflow's UI is inactive too, only the answer may lag by ``ttl``."""

    def __init__(
        self, ttl: float = PAUSED_TTL_SECONDS, read: Callable[[], frozenset[str]] | None = None
    ) -> None:
        self.ttl, self._read = ttl, read or paused_dag_ids
        self._ids: frozenset[str] = frozenset()
        self._at = float("-inf")
        self._lock = threading.Lock()

    def __contains__(self, dag_id: object) -> bool:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                try:
                    self._ids = self._read()
                except Exception as e:  # the answer falls back to the customer file's flag
                    log.debug("paused DAGs unknown (%s); the customer files' flags decide", type(e).__name__)
                self._at = time.monotonic()
            return dag_id in self._ids


def paused_dag_ids() -> frozenset[str]:
    import sqlalchemy as sa
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    from b2b_integrations.naming import DAG_ID_SEPARATOR

    with create_session() as session:
        return frozenset(
            session.scalars(
                sa.select(DagModel.dag_id).where(
                    DagModel.is_paused.is_(True), DagModel.dag_id.contains(DAG_ID_SEPARATOR, autoescape=True)
                )
            )
        )


class WebhookRoutes:
    """Looks up :class:`WebhookRoute` by (customer, integration, flow); re-reads the include folder when a
    YAML file changes (checked on each lookup). Thread-safe."""

    def __init__(self, include_dir: Path, paused: PausedDags | None = None) -> None:
        self.include_dir = include_dir
        self._routes = LiveProject(include_dir, routes_of)
        self._paused = paused if paused is not None else PausedDags()

    def find(self, customer_id: str, integration: str, flow: str) -> WebhookRoute | None:
        from b2b_integrations.naming import dag_id_for

        route = self._routes.get().get((customer_id, integration, flow))
        if route is not None and route.active and dag_id_for(customer_id, integration, flow) in self._paused:
            return replace(route, active=False)
        return route


def routes_of(project: Project) -> dict[tuple[str, str, str], WebhookRoute]:
    """Every enabled webhook flow of every valid customer integration."""
    from b2b_integrations.naming import inbox_asset_uri

    routes = {}
    for deployed in deployed_flows(project):
        trigger = deployed.flow.trigger
        if not isinstance(trigger, WebhookTrigger):
            continue
        slot = trigger.secret_connection
        key = (deployed.customer_id, deployed.integration, deployed.flow_name)
        routes[key] = WebhookRoute(
            customer_id=deployed.customer_id,
            integration=deployed.integration,
            flow=deployed.flow_name,
            signature=trigger.signature,
            secret_conn_id=deployed.settings.connections.get(slot) if slot else None,
            payload_schema=trigger.payload_schema,
            asset_uri=inbox_asset_uri(*key),
            active=deployed.settings.active is not False,
        )
    return routes


def connection_secret(route: WebhookRoute) -> str | None:
    """The signing secret: the password of the customer's connection for the flow's secret slot."""
    if route.secret_conn_id is None:
        return None
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(route.secret_conn_id).password
    except Exception as e:  # missing connection or secrets backend down: ours to fix, the sender should retry
        raise StoreUnavailable(f"the signing secret cannot be read ({type(e).__name__})") from None
