"""What a change to an instance does to the running deployment (Airflow's metadata DB, API server only).

- ``request_reparse``: the customer's DAG file (its shard) and the problems file are queued for parsing
  through Airflow's own priority-parsing queue (what ``PUT /api/v2/parseDagFile`` writes), so a change
  reaches the scheduler in seconds instead of waiting for the next ``min_file_process_interval``.
- ``set_paused``: activation pauses or unpauses the instance's DAGs at once; the file's ``active`` flag
  (set by the same request) decides for DAGs that do not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from b2b_integrations.factory.planner import DAG_ID_SEPARATOR
from b2b_integrations.factory.shards import shard_count, shard_file, shard_of

DAGS_BUNDLE = "dags-folder"
PROBLEMS_FILE = "b2b_config_problems.py"


def instance_dag_prefix(customer: str, integration: str) -> str:
    # Ids are lower_snake_case with single underscores, so "<customer>__<integration>__" matches exactly
    # that instance's flows and never another customer whose id starts the same way.
    return f"{customer}{DAG_ID_SEPARATOR}{integration}{DAG_ID_SEPARATOR}"


def request_reparse(customer: str, session: Any) -> None:
    from airflow.models.dagbag import DagPriorityParsingRequest

    count, _ = shard_count()
    for name in (shard_file(shard_of(customer, count)), PROBLEMS_FILE):
        session.add(DagPriorityParsingRequest(bundle_name=DAGS_BUNDLE, relative_fileloc=name))


@dataclass(frozen=True)
class FlowDag:
    dag_id: str
    flow: str
    is_paused: bool
    exists: bool


def instance_dags(customer: str, integration: str, session: Any) -> list[FlowDag]:
    """The instance's DAGs as Airflow knows them now (stale ones, of removed flows, left out)."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel

    prefix = instance_dag_prefix(customer, integration)
    rows = session.execute(
        sa.select(DagModel.dag_id, DagModel.is_paused).where(
            DagModel.dag_id.startswith(prefix, autoescape=True), DagModel.is_stale.is_(False)
        )
    ).all()
    return [FlowDag(dag_id, dag_id[len(prefix) :], bool(paused), True) for dag_id, paused in rows]


def set_paused(customer: str, integration: str, paused: bool, session: Any) -> list[str]:
    """Pause or unpause every DAG of the instance; the ids changed."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel

    prefix = instance_dag_prefix(customer, integration)
    ids = session.scalars(
        sa.select(DagModel.dag_id).where(
            DagModel.dag_id.startswith(prefix, autoescape=True), DagModel.is_paused.is_not(paused)
        )
    ).all()
    if ids:  # select, then update: MySQL has no UPDATE ... RETURNING
        session.execute(sa.update(DagModel).where(DagModel.dag_id.in_(ids)).values(is_paused=paused))
    return sorted(ids)
