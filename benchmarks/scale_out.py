"""Scale-out: the same batch of short per-customer DAG runs on LocalExecutor and on CeleryExecutor with 1 and
2 workers, on this machine, so the cost and the gain of Airflow's distributed engine are on record.

For each engine a fresh real Airflow is started (tests/airflow_stack.py or tests/celery_stack.py: API server,
scheduler, dag-processor on a throwaway PostgreSQL metadata DB; Celery's broker is the machine's Redis,
database 12, flushed afterwards) with N customers (default 100) of one small template: a manually triggered
flow of a transform (``generate_inventory``, 5 SKUs) and a load (upsert into a table shared by the customers
in a throwaway PostgreSQL app database, created by their concurrent first runs: nothing is created up front). Once every DAG is parsed, one run per customer is triggered through the
REST API (10 at a time) and the batch is timed from the first trigger to the last run's end. Then K more
runs (default 5) go one at a time through the idle deployment.

Printed per engine: task slots (LocalExecutor: ``[core] parallelism``; Celery: workers x concurrency), the
batch's wall time, runs per minute, run duration p50, the task queue-to-start delay (``start_date -
queued_dttm`` of every task instance) p50 and p90 in the batch (mostly waiting for a free slot behind the
backlog) and p50 / max in the idle runs (the engine's own hand-over cost: LocalExecutor's pool vs Celery's
broker round trip), how the tasks were spread over the workers, and the 1-minute load average before and
after (this machine is shared: other work on it shows up in the figures). Every run must succeed and every
customer's rows must be there, or the script fails.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379. About 10 minutes with defaults.
Run: .venv/bin/python benchmarks/scale_out.py [--customers N --slots S --engines local,celery1,celery2
     --idle-runs K]
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from airflow_stack import PG, AirflowStack, _admin, start_airflow_stack  # noqa: E402  (test support)
from celery_stack import start_celery_stack  # noqa: E402
from helpers import pg_rows, write_include  # noqa: E402

REDIS_DB = 12  # the scale-out test uses 11
SKUS = 5


@dataclass
class Result:
    engine: str
    slots: str
    wall: float
    run_p50: float
    queue_p50: float
    queue_p90: float
    idle_p50: float
    idle_max: float
    spread: str
    load_before: float
    load_after: float

    def row(self, runs: int) -> str:
        return (
            f"| {self.engine} | {self.slots} | {self.wall:.1f} s | {runs / self.wall * 60:.1f} | "
            f"{self.run_p50:.1f} s | {self.queue_p50:.1f} s | {self.queue_p90:.1f} s | "
            f"{self.idle_p50:.2f} s / {self.idle_max:.2f} s | {self.spread} | "
            f"{self.load_before:.2f} -> {self.load_after:.2f} |"
        )


def template() -> dict[str, Any]:
    return {
        "name": "bench_short",
        "description": "A short per-customer run: generate a few rows, upsert them.",
        "connections": {"app_db": {"type": "postgres"}},
        "defaults": {"retries": 0},
        "flows": {
            "snapshot": {
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "generate",
                        "kind": "transform",
                        "callable": "b2b_integrations.transforms.demo.generate_inventory",
                        "options": {"warehouse": "${customer.id}", "sku_count": SKUS, "as_of": "2026-01-01"},
                    },
                    {
                        "id": "load",
                        "kind": "load",
                        "connection": "app_db",
                        "table": "bench_levels",
                        "key": ["customer_id", "sku"],
                        "create_table": True,
                        "columns": {
                            "customer_id": "VARCHAR(60)",
                            "sku": "VARCHAR(40)",
                            "on_hand": "INTEGER",
                            "as_of": "VARCHAR(10)",
                        },
                    },
                ],
            }
        },
    }


def customers(count: int) -> dict[str, dict[str, Any]]:
    return {
        f"b{i:03d}": {
            "id": f"b{i:03d}",
            "name": f"Bench {i:03d}",
            "integrations": {"bench_short": {"connections": {"app_db": "bench_db"}}},
        }
        for i in range(count)
    }


def run_batch(stack: AirflowStack, count: int) -> tuple[float, list[float], list[float], Counter[str]]:
    """Trigger one run per customer; (wall s, run durations, queue-to-start delays, tasks per host)."""
    dag_ids = [f"b{i:03d}__bench_short__snapshot" for i in range(count)]
    stack.wait_for(
        f"{count} DAGs parsed",
        lambda: stack.sql("SELECT count(*) FROM serialized_dag WHERE dag_id LIKE 'b%'")[0][0] == count,
        timeout=300,
    )
    headers = {"Authorization": f"Bearer {stack.token()}"}
    logical = datetime.now(UTC).isoformat()
    started = time.time()

    def trigger(dag_id: str) -> int:
        body = {"dag_run_id": "bench", "logical_date": logical}
        return httpx.post(
            f"{stack.url}/api/v2/dags/{dag_id}/dagRuns", json=body, headers=headers, timeout=60
        ).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = Counter(pool.map(trigger, dag_ids))
    if statuses != {200: count}:
        raise SystemExit(f"triggers answered {dict(statuses)}")
    stack.wait_for(
        "every run to finish",
        lambda: stack.sql("SELECT count(*) FROM dag_run WHERE state IN ('success', 'failed')")[0][0] == count,
        timeout=3600,
        every=1.0,
    )
    states = stack.sql("SELECT state, count(*) FROM dag_run GROUP BY state")
    if states != [("success", count)]:
        failed = stack.sql("SELECT dag_id, task_id FROM task_instance WHERE state = 'failed'")
        logs = [
            path.read_text(errors="replace")[-3000:]
            for dag_id, task_id in failed
            for path in (stack.home / "logs").glob(f"dag_id={dag_id}/*/task_id={task_id}/*.log")
        ]
        raise SystemExit(f"runs ended {states}; failed tasks {failed}:\n" + "\n".join(logs))
    end = stack.sql("SELECT extract(epoch FROM max(end_date)) FROM dag_run")[0][0]
    runs = [float(s) for (s,) in stack.sql("SELECT extract(epoch FROM end_date - start_date) FROM dag_run")]
    hosts = Counter(h for (h,) in stack.sql("SELECT hostname FROM task_instance"))
    return float(end) - started, runs, _queue_delays(stack, "bench"), hosts


def run_idle(stack: AirflowStack, count: int) -> list[float]:
    """One run at a time on an idle deployment: queue-to-start delays that are the engine's own cost,
    not time spent waiting for a free slot behind a backlog."""
    headers = {"Authorization": f"Bearer {stack.token()}"}
    for n in range(count):
        run_id = f"idle_{n}"
        body = {"dag_run_id": run_id, "logical_date": datetime.now(UTC).isoformat()}
        url = f"{stack.url}/api/v2/dags/b000__bench_short__snapshot/dagRuns"
        httpx.post(url, json=body, headers=headers, timeout=60).raise_for_status()
        stack.wait_for(
            f"run {run_id}",
            lambda r=run_id: stack.sql(f"SELECT state FROM dag_run WHERE run_id = '{r}'") == [("success",)],
            timeout=300,
            every=0.2,
        )
    return _queue_delays(stack, "idle_%")


def _queue_delays(stack: AirflowStack, run_ids: str) -> list[float]:
    query = (
        "SELECT extract(epoch FROM start_date - queued_dttm) FROM task_instance "
        f"WHERE run_id LIKE '{run_ids}'"
    )
    return [float(s) for (s,) in stack.sql(query)]


def measure(
    engine: str, count: int, slots: int, idle_runs: int, include: Path, env: dict[str, str]
) -> Result:
    load_before = os.getloadavg()[0]
    if engine == "local":
        stack = start_airflow_stack(include, {**env, "AIRFLOW__CORE__PARALLELISM": str(slots)})
        airflow, stop, label = stack, stack.stop, f"{slots}"
    else:
        workers = int(engine.removeprefix("celery"))
        celery = start_celery_stack(include, env, workers=workers, concurrency=slots, redis_db=REDIS_DB)
        airflow, stop, label = celery.airflow, celery.stop, f"{workers} x {slots}"
    try:
        wall, runs, queue, hosts = run_batch(airflow, count)
        idle = run_idle(airflow, idle_runs)
    finally:
        stop()
    spread = " / ".join(str(n) for _, n in sorted(hosts.items())) if engine != "local" else "-"
    return Result(
        engine={"local": "LocalExecutor"}.get(engine, f"Celery, {engine.removeprefix('celery')} worker(s)"),
        slots=label,
        wall=wall,
        run_p50=statistics.median(runs),
        queue_p50=statistics.median(queue),
        queue_p90=statistics.quantiles(queue, n=10)[-1],
        idle_p50=statistics.median(idle),
        idle_max=max(idle),
        spread=spread,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100, help="runs per engine, one per customer")
    parser.add_argument(
        "--slots", type=int, default=4, help="LocalExecutor parallelism = Celery concurrency per worker"
    )
    parser.add_argument("--engines", default="local,celery1,celery2")
    parser.add_argument("--idle-runs", type=int, default=5, help="single runs on the idle deployment after")
    args = parser.parse_args()

    app_db = f"b2b_bench_scale_{uuid.uuid4().hex[:8]}"
    results = []
    try:
        for engine in args.engines.split(","):
            with tempfile.TemporaryDirectory(prefix="b2b-bench-scale-") as tmp:
                include = write_include(
                    Path(tmp) / "include", {"bench_short": template()}, customers(args.customers)
                )
                _admin(f'DROP DATABASE IF EXISTS "{app_db}" WITH (FORCE)')  # each engine starts empty
                _admin(f'CREATE DATABASE "{app_db}"')
                # No table up front: every customer's first run creates the shared table at the same moment,
                # which the DDL lock (state/ddl.py) must make safe; a failed run fails the script.
                env = {"AIRFLOW_CONN_BENCH_DB": f"{PG}/{app_db}"}
                print(f"{engine}: starting ...", flush=True)
                result = measure(engine, args.customers, args.slots, args.idle_runs, include, env)
                rows = pg_rows(app_db, "SELECT count(DISTINCT customer_id), count(*) FROM bench_levels")
                if rows != [(args.customers, args.customers * SKUS)]:
                    raise SystemExit(f"{engine}: expected {args.customers} customers' rows, found {rows}")
                print(f"{engine}: {result.wall:.1f} s", flush=True)
                results.append(result)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{app_db}" WITH (FORCE)')

    print(f"\n{args.customers} runs of 2 tasks each (transform + load), {os.cpu_count()} CPUs\n")
    print(
        "| engine | task slots | batch wall | runs/min | run p50 | queue->start p50 | p90 "
        "| idle queue->start p50 / max | tasks per worker | load 1m |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        print(result.row(args.customers))


if __name__ == "__main__":
    main()
