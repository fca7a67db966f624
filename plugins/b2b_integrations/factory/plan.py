"""The plan: plain dataclasses saying which DAGs and tasks to build, with every value resolved.

The plan is the seam between config and Airflow: it is built without importing Airflow, so the whole
config -> DAG mapping is testable as data, and ``build.py`` is the only place that instantiates operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class TaskPlan:
    """One operator instance: its class (dotted path) and keyword arguments."""

    task_id: str
    kind: str
    operator: str
    arguments: dict[str, Any]
    retries: int | None = None
    doc_md: str = ""


@dataclass(frozen=True)
class PubSubWatch:
    """A Redis pub/sub channel or RabbitMQ queue whose messages become events of an asset (through the
    triggerer)."""

    channel: str
    conn_id: str
    broker: str = "redis"
    prefetch: int | None = None
    batch_size: int | None = None
    batch_wait_seconds: float | None = None


@dataclass(frozen=True)
class AssetRef:
    """An Airflow asset by name and URI; flows exchange events through these."""

    name: str
    uri: str
    watch: PubSubWatch | None = None


@dataclass(frozen=True)
class SyncPlan:
    """A synchronous flow: the step whose return value answers the caller, and the callback task."""

    result_task_id: str
    callback: TaskPlan
    """Runs after the steps whatever their outcome (a teardown); POSTs the answer to the caller's callback URL."""


@dataclass(frozen=True)
class DagPlan:
    """One DAG: a customer x integration x flow."""

    dag_id: str
    customer_id: str
    integration: str
    flow: str
    pattern: str
    schedule: str | timedelta | None
    schedule_asset: AssetRef | None
    outlet_asset: AssetRef | None
    catchup: bool
    max_active_runs: int
    tags: tuple[str, ...]
    description: str
    doc_md: str
    params: dict[str, dict[str, Any]]
    default_args: dict[str, Any]
    tasks: tuple[TaskPlan, ...]
    source_file: str = ""
    inbox: AssetRef | None = None
    """Event-driven flows (webhook, app event, pub/sub): the asset their events land on, also schedule_asset."""
    sync: SyncPlan | None = None
    """Synchronous flows: what the sync endpoint and the callback need."""
    alerts: dict[str, Any] | None = None
    """The customer's failure-alert targets (None: the operator's defaults only)."""
    paused_upon_creation: bool | None = None
    """The instance's activation (``active``) as the DAG's ``is_paused_upon_creation``; None: Airflow's default."""
    pool: str | None = None
    """The customer's Airflow pool (``limits.max_active_tasks``); None: Airflow's default_pool."""
    priority_weight: int | None = None
    """Every task's ``priority_weight`` (``limits.priority_weight``); None: Airflow's default (1)."""
