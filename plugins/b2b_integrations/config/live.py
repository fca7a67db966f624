"""Values derived from the include folder's project, kept fresh for long-running processes (the API server)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from b2b_integrations.config.last_valid import default_store
from b2b_integrations.config.loader import Project, load_project
from b2b_integrations.config.models import CustomerIntegration, Flow

T = TypeVar("T")


class LiveProject(Generic[T]):
    """Something derived from the include folder's project, rebuilt when a YAML file changes (mtime).

    Loaded with the last valid copies as the DAG factory loads it, so a customer whose file is broken is
    served (webhooks, sync calls) by the same configuration its DAGs run on."""

    def __init__(self, include_dir: Path, derive: Callable[[Project], T]) -> None:
        self.include_dir = include_dir
        self._derive = derive
        self._lock = threading.Lock()
        self._fingerprint: tuple[tuple[str, int], ...] | None = None
        self._value: T | None = None

    def get(self) -> T:
        fingerprint = self._current_fingerprint()
        with self._lock:
            if fingerprint != self._fingerprint or self._value is None:
                self._value = self._derive(load_project(self.include_dir, last_valid=default_store()))
                self._fingerprint = fingerprint
            return self._value

    def _current_fingerprint(self) -> tuple[tuple[str, int], ...]:
        files = sorted(p for p in self.include_dir.rglob("*") if p.suffix in (".yaml", ".yml"))
        return tuple((str(p), p.stat().st_mtime_ns) for p in files)


@dataclass(frozen=True)
class DeployedFlow:
    """One enabled flow of an enabled integration of an enabled, valid customer (what has a DAG)."""

    customer_id: str
    customer_name: str
    integration: str
    flow_name: str
    flow: Flow
    settings: CustomerIntegration
    config: dict[str, Any]
    """The customer's effective config: the template's defaults with the customer's values over them."""


def deployed_flows(project: Project) -> Iterator[DeployedFlow]:
    """Every flow that gets a DAG, in file order: for the endpoints that route requests to them."""
    for instance in project.customers:
        customer = instance.customer
        if not customer.enabled:
            continue
        for name, settings in instance.integrations.items():
            template = project.template_for(name, settings)  # its pinned version
            if template is None or not settings.enabled:
                continue
            config = {key: var.default for key, var in template.config.items()} | settings.config
            for flow_name, flow in template.flows.items():
                override = settings.flows.get(flow_name)
                if override is None or override.enabled:
                    yield DeployedFlow(customer.id, customer.name, name, flow_name, flow, settings, config)
