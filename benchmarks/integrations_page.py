"""Integrations page benchmark: the time the page's data takes to load at N customers x 3 integrations,
against Airflow's own DAG listing with the same page size, on a real API server (tests/airflow_stack.py,
throwaway PostgreSQL metadata DB).

Generated, so the figures need no hours of scheduling: N customer files with three integrations each
(the shipped templates ``crm_contacts``, ``invoice_reports``, ``billing_webhooks``), and in the metadata DB
what the factory and the scheduler would have left: one DAG per flow with the factory's tags, ``RUNS``
finished runs per DAG with their task instances, the load steps' ``rows_loaded`` XComs, and for every
20th customer a newest run that failed at its first step with a public error. App database ledgers
(``b2b_dead_letters``, ``b2b_deliveries``) hold a few rows too. Printed, in milliseconds, one request at a
time, p50 / p99:

- ours: ``GET /b2b/api/v1/overview?limit=50`` (first page), the same with ``health=failing``, and with a
  search;
- floor: Airflow's ``GET /api/v2/dags?limit=50`` (its DAG list page: DAGs, tags, latest runs) and the
  same with ``tags=customer:customer_0001`` (a filtered listing), measured in the same run.

Every answer is checked (totals, the failing customers and their failed step and reason, counts) before
any figure is printed; a wrong result exits 1. Run from the repository root::

    .venv/bin/python benchmarks/integrations_page.py                  # N = 1000
    .venv/bin/python benchmarks/integrations_page.py --customers 100 --requests 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg2
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "plugins"))
from airflow_stack import PG, start_airflow_stack  # noqa: E402  (test support)

INTEGRATIONS = ("crm_contacts", "invoice_reports", "billing_webhooks")
RUNS = 10
FAILING_EVERY = 20
DEGRADED_EVERY = 10
"""Every 10th customer has a pending delivery; those that are not failing too are degraded."""
REASON = "the partner answered 401: check the API key"


def fail(message: str) -> None:
    print(f"WRONG RESULT: {message}", file=sys.stderr)
    sys.exit(1)


def admin_db(statement: str) -> None:
    conn = psycopg2.connect(f"{PG}/postgres")
    try:
        conn.autocommit = True
        conn.cursor().execute(statement)
    finally:
        conn.close()


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f}  p99 {p99 * 1000:7.1f}  (n={len(ordered)})"


def write_include(
    root: Path, n: int, app_db: str
) -> tuple[Path, list[tuple[str, str, str, str]], list[tuple[str, str]]]:
    """Templates copied from include/, N customer files; the (integration, flow, pattern, first step) of
    every flow, as the planner plans them for one customer."""
    from b2b_integrations.config.loader import load_project
    from b2b_integrations.factory.planner import plan_project

    include = root / "include"
    shutil.copytree(REPO / "include" / "integrations", include / "integrations")
    (include / "customers").mkdir()
    demo = {
        c["id"]: c
        for c in (yaml.safe_load(p.read_text()) for p in (REPO / "include" / "customers").glob("*.yaml"))
    }
    blocks = {}
    for customer in demo.values():
        for name, settings in (customer.get("integrations") or {}).items():
            if name in INTEGRATIONS and name not in blocks:
                connections = {slot: app_db for slot in (settings or {}).get("connections", {})}
                blocks[name] = {**(settings or {}), "connections": connections}
    if set(blocks) != set(INTEGRATIONS):
        fail(f"the demo customers do not use all of {INTEGRATIONS}")
    for i in range(n):
        cid = f"customer_{i:04d}"
        body = {"id": cid, "name": f"Customer {i:04d} Ltd", "integrations": blocks}
        (include / "customers" / f"{cid}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    first = load_project(include, customer_filter=lambda name: name == "customer_0000")
    plans = plan_project(first)
    flows = [(p.integration, p.flow, p.pattern, p.tasks[0].task_id) for p in plans]
    if {f[0] for f in flows} != set(INTEGRATIONS):
        fail(f"planned flows {flows}, problems {[str(p) for p in first.problems]}")
    delivering = [(p.integration, p.flow) for p in plans if any(t.kind == "deliver" for t in p.tasks)]
    if not delivering:
        fail("no planned flow keeps a delivery ledger")
    return include, flows, delivering


def fill_metadata(meta_db: str, n: int, flows: list[tuple[str, str, str, str]]) -> None:
    """DAGs, tags, runs, task instances and XComs as the factory and scheduler would have left them."""
    sql = [
        "INSERT INTO dag_bundle (name) VALUES ('dags-folder') ON CONFLICT DO NOTHING",
        "CREATE TEMP TABLE flows (integration text, flow text, pattern text, step text)",
    ]
    values = ", ".join(f"('{i}', '{f}', '{p}', '{s}')" for i, f, p, s in flows)
    sql += [
        f"INSERT INTO flows VALUES {values}",
        f"CREATE TEMP TABLE dags AS SELECT 'customer_' || lpad(c::text, 4, '0') AS customer, c, f.* , "
        f"'customer_' || lpad(c::text, 4, '0') || '__' || f.integration || '__' || f.flow AS dag_id "
        f"FROM generate_series(0, {n - 1}) c CROSS JOIN flows f",
        "INSERT INTO dag (dag_id, is_paused, is_stale, bundle_name, timetable_type, partition_mapper_info, "
        "max_active_tasks, max_consecutive_failed_dag_runs, has_task_concurrency_limits, next_dagrun_create_after, "
        "fileloc, relative_fileloc, timetable_summary) "
        "SELECT dag_id, false, false, 'dags-folder', 'airflow.timetables.trigger.CronTriggerTimetable', '{}', 16, 0, "
        "false, now() + interval '1 hour', 'b2b_integrations_dags.py', 'b2b_integrations_dags.py', '0 2 * * *' FROM dags",
        "INSERT INTO dag_tag (name, dag_id) SELECT 'customer:' || customer, dag_id FROM dags "
        "UNION ALL SELECT 'integration:' || integration, dag_id FROM dags "
        "UNION ALL SELECT 'pattern:' || pattern, dag_id FROM dags",
        # RUNS finished runs per DAG, an hour apart; the newest failed for every FAILING_EVERY-th customer.
        f"CREATE TEMP TABLE runs AS SELECT d.*, r, 'scheduled__' || r AS run_id, "
        f"now() - (r || ' hours')::interval AS run_after, "
        f"CASE WHEN r = 1 AND d.c % {FAILING_EVERY} = 0 THEN 'failed' ELSE 'success' END AS state "
        f"FROM dags d CROSS JOIN generate_series(1, {RUNS}) r",
        "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, logical_date, state, start_date, end_date, "
        "queued_at, triggered_by) SELECT dag_id, run_id, 'scheduled', run_after, run_after, state, run_after, "
        "run_after + interval '30 seconds', run_after, 'TIMETABLE' FROM runs",
        "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries, pool, pool_slots, "
        "state, start_date, end_date) SELECT gen_random_uuid(), step, dag_id, run_id, -1, 1, 0, 'default_pool', 1, "
        "state, run_after, run_after + interval '20 seconds' FROM runs",
        "INSERT INTO xcom (dag_run_id, task_id, map_index, key, dag_id, run_id, value, timestamp) "
        "SELECT dr.id, r.step, -1, 'return_value', r.dag_id, r.run_id, '{\"rows_loaded\": 7}'::jsonb, r.run_after "
        "FROM runs r JOIN dag_run dr USING (dag_id, run_id) WHERE r.state = 'success'",
        "INSERT INTO xcom (dag_run_id, task_id, map_index, key, dag_id, run_id, value, timestamp) "
        "SELECT dr.id, r.step, -1, 'b2b_public_error', r.dag_id, r.run_id, "
        f'\'{{"message": "{REASON}", "http_status": 502}}\'::jsonb, r.run_after '
        "FROM runs r JOIN dag_run dr USING (dag_id, run_id) WHERE r.state = 'failed'",
        "ANALYZE",
    ]
    with psycopg2.connect(f"{PG}/{meta_db}") as conn, conn.cursor() as cur:
        for statement in sql:
            cur.execute(statement)


def fill_app_db(app_db: str, n: int, delivering: list[tuple[str, str]]) -> None:
    """A delivery not accepted yet for every DEGRADED_EVERY-th customer's delivering flows; the dead
    letters table exists and is empty."""
    with psycopg2.connect(f"{PG}/{app_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE b2b_dead_letters (customer_id text, integration text, flow text, replayed_at timestamptz)"
        )
        cur.execute(
            "CREATE TABLE b2b_deliveries (customer_id text, integration text, flow text, status text)"
        )
        for integration, flow in delivering:
            cur.execute(
                "INSERT INTO b2b_deliveries SELECT 'customer_' || lpad(c::text, 4, '0'), %s, %s, 'failed' "
                "FROM generate_series(0, %s, %s) c",
                (integration, flow, n - 1, DEGRADED_EVERY),
            )


def timed(client: httpx.Client, url: str, **params: object) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    answer = client.get(url, params=params)  # type: ignore[arg-type]
    return time.perf_counter() - start, answer


def check_overview(answer: httpx.Response, n: int, flows: list[tuple[str, str, str, str]]) -> None:
    if answer.status_code != 200:
        fail(f"overview {answer.status_code} {answer.text[:300]}")
    data = answer.json()
    failing = len(range(0, n, FAILING_EVERY))
    if data["total"] != n * len(INTEGRATIONS) or data["by_health"]["failing"] != failing * len(INTEGRATIONS):
        fail(f"overview total {data['total']}, by health {data['by_health']}")
    first = data["items"][0]
    if first["health"] != "failing" or first["customer"] != "customer_0000":
        fail(f"first row {first}")
    if first["last_failure"]["reason"] != REASON or not first["last_failure"]["task_id"]:
        fail(f"failure details {first['last_failure']}")
    degraded = len([c for c in range(0, n, DEGRADED_EVERY) if c % FAILING_EVERY])
    if (
        data["by_health"]["degraded"] != degraded
        or data["by_health"]["healthy"] != n * len(INTEGRATIONS) - failing * len(INTEGRATIONS) - degraded
    ):
        fail(f"by health {data['by_health']}: expected {degraded} degraded (a pending delivery)")


def check_rows(answer: httpx.Response, flows: list[tuple[str, str, str, str]]) -> None:
    """Healthy rows: every run of every flow loaded 7 rows within the last 24 h."""
    per_integration = {i: sum(1 for f in flows if f[0] == i) for i in INTEGRATIONS}
    rows = answer.json()["items"]
    if not rows:
        fail("no healthy row")
    for row in rows:
        if (
            row["health"] == "healthy"
            and row["counts"]["rows_loaded_24h"] != 7 * RUNS * per_integration[row["integration"]]
        ):
            fail(f"rows loaded in 24 h of {row['customer']}/{row['integration']}: {row['counts']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    n = args.customers
    root = Path(tempfile.mkdtemp(prefix="b2b-bench-page-"))
    app_db = f"b2b_bench_page_{uuid.uuid4().hex[:8]}"
    admin_db(f'CREATE DATABASE "{app_db}"')
    stack = None
    try:
        include, flows, delivering = write_include(root, n, "bench_app")
        fill_app_db(app_db, n, delivering)
        # The API server only: nothing parses or schedules, so the generated rows stay as written.
        stack = start_airflow_stack(
            include, {"AIRFLOW_CONN_BENCH_APP": f"{PG}/{app_db}"}, components=("api-server",)
        )
        start = time.perf_counter()
        fill_metadata(stack.meta_db, n, flows)
        generated = time.perf_counter() - start
        token = stack.token("admin")
        found: dict[str, list[float]] = {}
        with httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client:
            seconds, answer = timed(client, "/b2b/api/v1/overview", limit=50)
            check_overview(answer, n, flows)
            check_rows(client.get("/b2b/api/v1/overview", params={"limit": 50, "health": "healthy"}), flows)
            cold = seconds
            cases = {
                "ours: overview, first page": ("/b2b/api/v1/overview", {"limit": 50}),
                "ours: overview, health=failing": (
                    "/b2b/api/v1/overview",
                    {"limit": 50, "health": "failing"},
                ),
                "ours: overview, search 'customer_09'": (
                    "/b2b/api/v1/overview",
                    {"limit": 50, "q": "customer_09"},
                ),
                "floor: Airflow GET /api/v2/dags": ("/api/v2/dags", {"limit": 50}),
                "floor: Airflow /api/v2/dags?tags=...": (
                    "/api/v2/dags",
                    {"limit": 50, "tags": "customer:customer_0001"},
                ),
            }
            for _ in range(args.requests):
                for name, (url, params) in cases.items():
                    seconds, answer = timed(client, url, **params)
                    if answer.status_code != 200:
                        fail(f"{name}: {answer.status_code} {answer.text[:200]}")
                    found.setdefault(name, []).append(seconds)
            if client.get("/api/v2/dags", params={"limit": 1}).json()["total_entries"] < n * len(flows):
                fail("Airflow lists fewer DAGs than generated")
            failing = client.get("/b2b/api/v1/overview", params={"limit": 500, "health": "failing"}).json()
            if {r["customer"] for r in failing["items"]} != {
                f"customer_{i:04d}" for i in range(0, n, FAILING_EVERY)
            }:
                fail("health=failing did not return exactly the failing customers")
        load = os.getloadavg()
        print(f"Integrations page data at N = {n} customers x {len(INTEGRATIONS)} integrations "
              f"({n * len(flows)} DAGs, {n * len(flows) * RUNS} runs; {os.cpu_count()} cores, "
              f"load average {load[0]:.1f} / {load[1]:.1f})")  # fmt: skip
        print(
            f"  generated the metadata rows in {generated:.1f} s; first overview request (files read) {cold * 1000:.0f} ms"
        )
        print("  request latency, ms, one at a time, page size 50:")
        for name, samples in found.items():
            print(f"    {name:42s} {percentiles(samples)}")
    finally:
        if stack is not None:
            stack.stop()
        shutil.rmtree(root, ignore_errors=True)
        admin_db(f'DROP DATABASE IF EXISTS "{app_db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
