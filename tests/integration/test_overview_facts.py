"""The overview's facts read from a real migrated metadata DB: the 24 h row counts summed by PostgreSQL
agree with the same sums taken in Python (the SQLite path) on hostile XCom values, and the task instances
read are those of each DAG's newest success and newest failure only."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

T0 = datetime.now(UTC).replace(microsecond=0)


def _session() -> Any:
    from airflow.utils.session import create_session

    return create_session()


def _sql(session: Any, statement: str, **params: Any) -> None:
    import sqlalchemy as sa

    session.execute(sa.text(statement), params)


def _add_run(session: Any, dag_id: str, run_id: str, state: str, at: datetime) -> None:
    _sql(session, "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, logical_date, state, start_date, "
         "end_date, queued_at, triggered_by) VALUES (:d, :r, 'scheduled', :at, :at, :s, :at, :at, :at, 'TIMETABLE')",
         d=dag_id, r=run_id, s=state, at=at)  # fmt: skip


def _add_task(session: Any, dag_id: str, run_id: str, task_id: str, state: str, tries: int = 1) -> None:
    _sql(session, "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries, pool, "
         "pool_slots, state, start_date, end_date) VALUES (:id, :t, :d, :r, -1, :n, 3, 'default_pool', 1, :s, "
         "now(), now())", id=str(uuid.uuid4()), t=task_id, d=dag_id, r=run_id, n=tries, s=state)  # fmt: skip


def _add_xcom(session: Any, dag_id: str, run_id: str, task_id: str, value: str, at: datetime) -> None:
    _sql(session, "INSERT INTO xcom (dag_run_id, task_id, map_index, key, dag_id, run_id, value, timestamp) "
         "SELECT id, :t, -1, 'return_value', :d, :r, CAST(:v AS jsonb), :at FROM dag_run "
         "WHERE dag_id = :d AND run_id = :r", t=task_id, d=dag_id, r=run_id, v=value, at=at)  # fmt: skip


def _add_dag(session: Any, dag_id: str) -> None:
    _sql(session, "INSERT INTO dag_bundle (name) VALUES ('dags-folder') ON CONFLICT DO NOTHING")
    _sql(session, "INSERT INTO dag (dag_id, is_paused, is_stale, bundle_name, timetable_type, partition_mapper_info, "
         "max_active_tasks, max_consecutive_failed_dag_runs, has_task_concurrency_limits, fileloc, "
         "relative_fileloc) VALUES (:d, false, false, 'dags-folder', '', '{}', 16, 0, false, 'f.py', 'f.py')",
         d=dag_id)  # fmt: skip


@pytest.fixture
def postgres_meta(airflow_db: str) -> str:
    if not airflow_db.startswith("postgresql"):
        pytest.skip("the summing in SQL is PostgreSQL's; this run's metadata DB is not PostgreSQL")
    return uuid.uuid4().hex[:8]


# Every value a step could have pushed: integers count, anything else counts 0, in both paths.
HOSTILE_VALUES = [
    {"rows_loaded": 5, "rows_quarantined": 2},
    {"records_loaded": 3, "records_quarantined": 1, "rows_loaded": 4},
    {"rows_loaded": 7.0},
    {"rows_loaded": 2.5},
    {"rows_loaded": True},
    {"rows_loaded": "100"},
    {"rows_loaded": None},
    {"rows_loaded": {"nested": 9}},
    {"rows_loaded": [1, 2]},
    {"rows_loaded": -3},
    {"rows_loaded": 10**30},
    [{"rows_loaded": 50}],
    "rows_loaded",
    123,
    {},
]


def test_counts_summed_by_postgresql_equal_the_python_sums_on_hostile_values(postgres_meta: str) -> None:
    from airflow.models.xcom import XComModel

    from b2b_integrations.instances import observe

    mine, other, old = (f"c{postgres_meta}__feeds__{f}" for f in ("pull", "push", "stale"))
    with _session() as session:
        for dag_id in (mine, other, old):
            _add_dag(session, dag_id)
        for i, value in enumerate(HOSTILE_VALUES):
            _add_run(session, mine, f"r{i}", "success", T0 - timedelta(minutes=i))
            _add_task(session, mine, f"r{i}", "load", "success")
            _add_xcom(session, mine, f"r{i}", "load", json.dumps(value), T0 - timedelta(minutes=i))
        _add_run(session, other, "r", "success", T0)
        _add_task(session, other, "r", "load", "success")
        _add_xcom(session, other, "r", "load", json.dumps({"rows_loaded": 1000}), T0)
        _add_run(session, old, "r", "success", T0 - timedelta(days=2))
        _add_task(session, old, "r", "load", "success")
        _add_xcom(session, old, "r", "load", json.dumps({"rows_loaded": 1}), T0 - timedelta(days=2))

    since = T0 - timedelta(hours=24)
    wanted = (
        XComModel.dag_id.in_([mine, old]),
        XComModel.key == "return_value",
        XComModel.timestamp >= since,
    )
    with _session() as session:
        in_sql = observe.load_counts(session, [mine, old], since)
        in_python = observe._summed_here(session, wanted)
    expected = {mine: {"rows_loaded": 5 + 3 + 4 - 3 + 10**30, "quarantined_records": 2 + 1}}
    assert in_sql == expected
    assert in_python == expected


def test_task_facts_come_from_the_newest_success_and_newest_failure_only(postgres_meta: str) -> None:
    from b2b_integrations.instances.overview_facts import newest_runs, run_tasks

    dag_id = f"c{postgres_meta}__feeds__pull"
    with _session() as session:
        _add_dag(session, dag_id)
        _add_run(session, dag_id, "old_failure", "failed", T0 - timedelta(hours=3))
        _add_task(session, dag_id, "old_failure", "fetch", "failed")
        _add_run(session, dag_id, "failure", "failed", T0 - timedelta(hours=2))
        _add_task(session, dag_id, "failure", "fetch", "success", tries=2)
        _add_task(session, dag_id, "failure", "load", "failed")
        _add_run(session, dag_id, "success", "success", T0 - timedelta(hours=1))
        _add_task(session, dag_id, "success", "fetch", "success")
        _add_run(session, dag_id, "running", "running", T0)

    with _session() as session:
        runs = newest_runs(session, [dag_id])
        tasks = run_tasks(session, [dag_id])
    assert {state: run_id for state, (run_id, _) in runs[dag_id].items()} == {
        "failed": "failure", "success": "success", "running": "running"
    }  # fmt: skip
    assert set(tasks) == {(dag_id, "failure")}
    assert [task for _, task in tasks[(dag_id, "failure")]["failed"]] == ["load"]
    assert tasks[(dag_id, "failure")]["retried"] is True
