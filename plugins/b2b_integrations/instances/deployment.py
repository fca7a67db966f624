"""What a change to an instance does to the running deployment (Airflow's metadata DB, API server only).

- ``request_reparse``: the customer's DAG file (its shard) and the problems file are queued for parsing
  through Airflow's own priority-parsing queue (what ``PUT /api/v2/parseDagFile`` writes), so a change
  reaches the scheduler in seconds instead of waiting for the next ``min_file_process_interval``.
- ``set_paused``: activation pauses or unpauses the instance's DAGs at once; the file's ``active`` flag
  (set by the same request) decides for DAGs that do not exist yet.
- ``queue_held_events``: on activation, a run for each event-driven flow whose inbox got events while the
  instance was inactive (Airflow queues none for a paused DAG).
- ``save_connection`` / ``find_connection``: customer credentials as Airflow connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from b2b_integrations.factory.shards import shard_count, shard_file, shard_of
from b2b_integrations.naming import dag_id_prefix, inbox_asset_uri

DAGS_BUNDLE = "dags-folder"
PROBLEMS_FILE = "b2b_config_problems.py"


def instance_dag_prefix(customer: str, integration: str) -> str:
    # Ids are lower_snake_case with single underscores, so "<customer>__<integration>__" matches exactly
    # that instance's flows and never another customer whose id starts the same way.
    return dag_id_prefix(customer, integration)


def request_reparse(customer: str, session: Any) -> None:
    """Queue the customer's shard file and the problems file; one pending request per file is enough."""
    import sqlalchemy as sa
    from airflow.models.dagbag import DagPriorityParsingRequest

    count, _ = shard_count()
    for name in (shard_file(shard_of(customer, count)), PROBLEMS_FILE):
        pending = session.scalar(
            sa.select(sa.func.count()).where(
                DagPriorityParsingRequest.bundle_name == DAGS_BUNDLE,
                DagPriorityParsingRequest.relative_fileloc == name,
            )
        )
        if pending:
            continue
        try:
            with session.begin_nested():  # another writer may queue the same file at the same moment
                session.add(DagPriorityParsingRequest(bundle_name=DAGS_BUNDLE, relative_fileloc=name))
        except sa.exc.IntegrityError:
            continue


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


# ---- customer credentials --------------------------------------------------------------------------
def save_connection(fields: Any, session: Any) -> bool:
    """Create or replace the Airflow connection ``fields`` (``credentials.ConnectionFields``) describes,
    through Airflow's ``Connection`` model, as Airflow's REST API writes one (encrypted with the fernet key
    when one is set); True when it was created."""
    import json

    import sqlalchemy as sa
    from airflow.models.connection import Connection

    conn = session.scalar(sa.select(Connection).where(Connection.conn_id == fields.conn_id))
    created = conn is None
    if conn is None:
        conn = Connection(conn_id=fields.conn_id, conn_type=fields.conn_type)
        session.add(conn)
    conn.conn_type = fields.conn_type
    conn.description = fields.description
    conn.host = fields.host
    conn.schema = None
    conn.port = fields.port
    conn.login = fields.login
    conn.password = fields.password
    conn.extra = json.dumps(fields.extra) if fields.extra else None
    return created


def delete_connection(conn_id: str, session: Any) -> None:
    import sqlalchemy as sa
    from airflow.models.connection import Connection

    session.execute(sa.delete(Connection).where(Connection.conn_id == conn_id))


def find_connection(conn_id: str) -> Any:
    """The connection as hooks get it (secrets backends first, then the metadata DB); None if none has it."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None


# ---- events kept while inactive --------------------------------------------------------------------
@dataclass(frozen=True)
class HeldEvents:
    dag_id: str
    messages: int
    """Messages on the inbox after the flow's position (what its next run will read)."""


def queue_held_events(customer: str, integration: str, session: Any) -> list[HeldEvents]:
    """Queue a run of each event-driven flow of the instance whose inbox holds events its runs have not
    read, as Airflow's asset manager does for an event that arrives while the DAG is unpaused.

    Airflow (3.3, ``assets/manager.py``) queues nothing for a paused DAG, so events that arrive while an
    instance is inactive would wait for the next event. Our inbox step reads every event after the
    position it stores in the inbox asset's state store (``EVENT_CURSOR_KEY``), so one queued run takes
    them all; ``AssetDagRunQueue`` is the row the asset manager writes (one per asset and DAG, so a
    repeat is harmless)."""
    import json

    import sqlalchemy as sa
    from airflow._shared.state import AssetScope
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel, DagScheduleAssetReference
    from airflow.models.dag import DagModel
    from airflow.state import get_state_backend

    from b2b_integrations.staging import EVENT_CURSOR_KEY, WEBHOOK_KEY

    prefix = instance_dag_prefix(customer, integration)
    refs = session.execute(
        sa.select(DagScheduleAssetReference.dag_id, AssetModel.id, AssetModel.uri)
        .join(AssetModel, AssetModel.id == DagScheduleAssetReference.asset_id)
        .join(DagModel, DagModel.dag_id == DagScheduleAssetReference.dag_id)
        .where(
            DagScheduleAssetReference.dag_id.startswith(prefix, autoescape=True), DagModel.is_stale.is_(False)
        )
    ).all()
    held: list[HeldEvents] = []
    for dag_id, asset_id, uri in refs:
        if uri != inbox_asset_uri(customer, integration, dag_id[len(prefix) :]):
            continue  # triggered by another flow's output, not by an inbox
        position = get_state_backend().get(AssetScope(asset_id=asset_id), EVENT_CURSOR_KEY, session=session)
        if isinstance(position, str):
            position = json.loads(position)
        after = position.get("timestamp") if isinstance(position, dict) else None
        seen = set(position.get("ids") or []) if isinstance(position, dict) else set()
        query = sa.select(AssetEvent.timestamp, AssetEvent.extra).where(AssetEvent.asset_id == asset_id)
        if after:
            from datetime import datetime

            query = query.where(AssetEvent.timestamp >= datetime.fromisoformat(after))
        messages = 0
        for _, extra in session.execute(query):
            found = (extra or {}).get(WEBHOOK_KEY) if isinstance(extra, dict) else None
            if isinstance(found, list):
                messages += sum(1 for m in found if not (isinstance(m, dict) and m.get("message_id") in seen))
            else:
                messages += 1
        if messages:
            _queue(session, asset_id, dag_id, AssetDagRunQueue)
            held.append(HeldEvents(dag_id, messages))
    return held


def _queue(session: Any, asset_id: int, dag_id: str, model: Any) -> None:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        session.execute(
            insert(model).values(asset_id=asset_id, target_dag_id=dag_id).on_conflict_do_nothing()
        )
        return
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            session.merge(model(asset_id=asset_id, target_dag_id=dag_id))
    except IntegrityError:
        pass  # queued already
