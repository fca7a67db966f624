"""The facts the monitor rules need, for every watched flow at once, from Airflow's metadata DB.

Four queries whatever the number of flows (DAG rows, last success per DAG, the runs after it, running
runs), plus the ledger's one (``ledger.alert_times``). Aggregates are computed by the database, so a flow
failing for months costs one row, not its whole history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from b2b_integrations.monitors.rules import FlowFacts


@dataclass(frozen=True)
class WatchedFlow:
    customer: str
    integration: str
    flow: str

    @property
    def dag_id(self) -> str:
        from b2b_integrations.factory.planner import DAG_ID_SEPARATOR

        return DAG_ID_SEPARATOR.join((self.customer, self.integration, self.flow))


def read_facts(
    session: Any,
    flows: Iterable[WatchedFlow],
    alert_times: dict[str, tuple[datetime | None, datetime | None]],
) -> list[FlowFacts]:
    """Facts of each flow whose DAG Airflow knows (flows without a DAG yet have nothing to watch)."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun

    by_dag = {flow.dag_id: flow for flow in flows}
    if not by_dag:
        return []
    ids = sorted(by_dag)
    dags = {
        dag_id: (bool(paused), due)
        for dag_id, paused, due in session.execute(
            sa.select(DagModel.dag_id, DagModel.is_paused, DagModel.next_dagrun_create_after).where(
                DagModel.dag_id.in_(ids), DagModel.is_stale.is_(False)
            )
        )
    }
    run = DagRun.__table__
    newest = (
        sa.select(
            run.c.dag_id,
            run.c.run_id,
            run.c.run_after,
            run.c.end_date,
            sa.func.row_number().over(partition_by=run.c.dag_id, order_by=run.c.run_after.desc()).label("n"),
        )
        .where(run.c.dag_id.in_(ids), run.c.state == "success")
        .subquery()
    )
    last = sa.select(newest.c.dag_id, newest.c.run_id, newest.c.run_after, newest.c.end_date).where(
        newest.c.n == 1
    )
    success = {row.dag_id: row for row in session.execute(last)}
    last_sub = last.subquery()
    after = sa.and_(
        run.c.dag_id.in_(ids),
        sa.or_(last_sub.c.run_after.is_(None), run.c.run_after > last_sub.c.run_after),
    )
    joined = run.outerjoin(last_sub, last_sub.c.dag_id == run.c.dag_id)
    failed = sa.case((run.c.state == "failed", 1), else_=0)
    aggregates = {
        row.dag_id: row
        for row in session.execute(
            sa.select(
                run.c.dag_id,
                sa.func.sum(failed).label("failures"),
                sa.func.min(sa.case((run.c.run_type == "scheduled", run.c.run_after), else_=None)).label(
                    "due"
                ),
            )
            .select_from(joined)
            .where(after)
            .group_by(run.c.dag_id)
        )
    }
    first_failed = (
        sa.select(
            run.c.dag_id,
            run.c.run_id,
            sa.func.row_number().over(partition_by=run.c.dag_id, order_by=run.c.run_after).label("n"),
        )
        .select_from(joined)
        .where(after, run.c.state == "failed")
        .subquery()
    )
    streak_start = {
        dag_id: run_id
        for dag_id, run_id in session.execute(
            sa.select(first_failed.c.dag_id, first_failed.c.run_id).where(first_failed.c.n == 1)
        )
    }
    running: dict[str, list[tuple[str, datetime]]] = {}
    for dag_id, run_id, started in session.execute(
        sa.select(run.c.dag_id, run.c.run_id, run.c.start_date).where(
            run.c.dag_id.in_(ids), run.c.state == "running", run.c.start_date.is_not(None)
        )
    ):
        running.setdefault(dag_id, []).append((run_id, started))

    found = []
    for dag_id in ids:
        if dag_id not in dags:
            continue
        flow, (paused, due) = by_dag[dag_id], dags[dag_id]
        ok, agg = success.get(dag_id), aggregates.get(dag_id)
        alerted, recovered = alert_times.get(dag_id, (None, None))
        found.append(
            FlowFacts(
                customer=flow.customer,
                integration=flow.integration,
                flow=flow.flow,
                dag_id=dag_id,
                is_paused=paused,
                next_due=due,
                last_success_due=ok.run_after if ok else None,
                last_success_end=ok.end_date if ok else None,
                last_success_run_id=ok.run_id if ok else None,
                first_unmet_due=agg.due if agg else None,
                failures_since_success=int(agg.failures or 0) if agg else 0,
                first_failure_run_id=streak_start.get(dag_id),
                running=tuple(sorted(running.get(dag_id, []), key=lambda r: r[1])),
                last_alert_at=alerted,
                last_recovered_at=recovered,
            )
        )
    return found
