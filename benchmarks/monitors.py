"""Monitors benchmark: the time one evaluation's facts and rules take at N customers x 3 flows, against the
floor of one grouped query over the same runs (the newest run per DAG), on a throwaway PostgreSQL metadata
DB migrated by Airflow (tests/airflow_stack.py's template).

Generated: N x 3 DAGs with RUNS finished runs each; every 20th customer's flows failed their last 4 runs,
every 25th has a run running for 2 hours, every 50th is late (its due time passed 2 hours ago with no run
created). Printed in milliseconds, p50 / p99 over REPEATS evaluations: ``read_facts`` (the four queries)
plus the rules for every flow, and the floor. The alerts are checked against the generated problems
before any figure is printed; a wrong result exits 1. Run from the repository root::

    .venv/bin/python benchmarks/monitors.py                      # N = 1000
    .venv/bin/python benchmarks/monitors.py --customers 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import sqlalchemy as sa
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "plugins"))
from airflow_stack import PG, _admin, _drop_quietly, _migrated_template  # noqa: E402  (test support)

FLOWS = ("contacts", "invoices", "hooks")
RUNS = 20
FAILING_EVERY, RUNNING_EVERY, LATE_EVERY = 20, 25, 50


def fail(message: str) -> None:
    print(f"WRONG RESULT: {message}", file=sys.stderr)
    sys.exit(1)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:8.1f}  p99 {p99 * 1000:8.1f}  (n={len(ordered)})"


def fill(meta_db: str, n: int) -> None:
    flows = ", ".join(f"('{f}')" for f in FLOWS)
    sql = [
        "INSERT INTO dag_bundle (name) VALUES ('dags-folder') ON CONFLICT DO NOTHING",
        f"CREATE TEMP TABLE dags AS SELECT c, 'customer_' || lpad(c::text, 4, '0') || '__crm__' || f AS dag_id "
        f"FROM generate_series(0, {n - 1}) c CROSS JOIN (VALUES {flows}) v(f)",
        "INSERT INTO dag (dag_id, is_paused, is_stale, bundle_name, timetable_type, partition_mapper_info, "
        "max_active_tasks, max_consecutive_failed_dag_runs, has_task_concurrency_limits, next_dagrun_create_after, "
        "fileloc, relative_fileloc, timetable_summary) "
        "SELECT dag_id, false, false, 'dags-folder', 'airflow.timetables.trigger.CronTriggerTimetable', '{}', 16, 0, "
        f"false, CASE WHEN c % {LATE_EVERY} = 0 THEN now() - interval '2 hours' ELSE now() + interval '1 hour' END, "
        "'b2b_integrations_dags.py', 'b2b_integrations_dags.py', '0 * * * *' FROM dags",
        # Late ones: the runs stop 3 hours ago, so the due time 2 hours ago has no run.
        f"CREATE TEMP TABLE runs AS SELECT d.*, r, 'scheduled__' || r AS run_id, "
        f"now() - ((r + CASE WHEN c % {LATE_EVERY} = 0 THEN 2 ELSE 0 END) || ' hours')::interval AS run_after, "
        f"CASE WHEN r <= 4 AND c % {FAILING_EVERY} = 0 THEN 'failed' ELSE 'success' END AS state "
        f"FROM dags d CROSS JOIN generate_series(1, {RUNS}) r",
        "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, logical_date, state, start_date, end_date, "
        "queued_at, triggered_by) SELECT dag_id, run_id, 'scheduled', run_after, run_after, state, run_after, "
        "run_after + interval '30 seconds', run_after, 'TIMETABLE' FROM runs",
        "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, logical_date, state, start_date, queued_at, "
        "triggered_by) SELECT dag_id, 'manual__long', 'manual', now() - interval '2 hours', NULL, 'running', "
        f"now() - interval '2 hours', now() - interval '2 hours', 'REST_API' FROM dags WHERE c % {RUNNING_EVERY} = 0",
        "ANALYZE",
    ]
    with psycopg2.connect(f"{PG}/{meta_db}") as conn, conn.cursor() as cur:
        for statement in sql:
            cur.execute(statement)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from b2b_integrations.config.monitors import Monitors
    from b2b_integrations.monitors.facts import WatchedFlow, read_facts
    from b2b_integrations.monitors.rules import evaluate

    home = tempfile.mkdtemp(prefix="b2b-bench-monitors-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {"AIRFLOW_HOME": home}
    template = _migrated_template(PG, env)
    meta_db = f"b2b_bench_monitors_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{meta_db}" TEMPLATE "{template}"')
    try:
        n = args.customers
        fill(meta_db, n)
        engine = sa.create_engine(f"{PG.replace('postgresql://', 'postgresql+psycopg2://')}/{meta_db}")
        flows = [WatchedFlow(f"customer_{c:04d}", "crm", f) for c in range(n) for f in FLOWS]
        monitors = Monitors(overdue_after=3600, max_duration=3600, warn_after_failures=3)
        ids = [flow.dag_id for flow in flows]
        ours, floor, alerts = [], [], Counter[str]()
        for _ in range(args.repeats):
            with Session(engine) as session:
                start = time.perf_counter()
                facts = read_facts(session, flows, {})
                now = datetime.now(UTC)
                found = [alert for fact in facts for alert in evaluate(fact, monitors, now)]
                ours.append(time.perf_counter() - start)
                alerts = Counter(alert.kind for alert in found)
            with Session(engine) as session:
                start = time.perf_counter()
                newest = session.execute(
                    sa.text(
                        "SELECT dag_id, max(run_after) FROM dag_run WHERE dag_id = ANY(:ids) GROUP BY dag_id"
                    ),
                    {"ids": ids},
                ).all()
                floor.append(time.perf_counter() - start)
        expected = Counter(
            {
                "failures": len(range(0, n, FAILING_EVERY)) * len(FLOWS),
                "duration_exceeded": len(range(0, n, RUNNING_EVERY)) * len(FLOWS),
                # A failing customer's first unmet due time is its oldest failed run (4 h ago); a late one's
                # is the due time with no run; customers both failing and late count once.
                "overdue": len({c for c in range(n) if c % FAILING_EVERY == 0 or c % LATE_EVERY == 0})
                * len(FLOWS),
            }
        )
        if alerts != expected or len(facts) != n * len(FLOWS) or len(newest) != n * len(FLOWS):
            fail(
                f"alerts {dict(alerts)}, expected {dict(expected)}; facts {len(facts)}, floor rows {len(newest)}"
            )
        runs = n * len(FLOWS) * RUNS
        load = os.getloadavg()[0]
        print(f"{n} customers x {len(FLOWS)} flows, {runs:,} finished runs; load average (1 min) {load:.1f}")
        print(f"  facts + rules, every flow : {percentiles(ours)}")
        print(f"  floor: newest run per DAG : {percentiles(floor)}")
        print(f"  ratio (p50)               : {statistics.median(ours) / statistics.median(floor):.1f}x")
        print(f"  alerts (checked)          : {dict(alerts)}")
    finally:
        _drop_quietly(meta_db, PG)


if __name__ == "__main__":
    main()
