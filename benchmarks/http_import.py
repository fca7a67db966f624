"""HTTP API import throughput: our import vs the floor (a bare httpx loop), same pages; then 50 customers.

Starts the demo CRM (include/demo/crm_app.py, via tests/crm_server.py) with N contacts (default 100,000) and
a latency of 5 ms per request, and measures, each in a fresh process:
- ours:  HttpApiImportOperator: a full sync of /api/page/contacts, 100 per page (1,000 pages), API key auth,
         every record validated, upserted into PostgreSQL with the incremental cursor in the same transaction;
- floor: a bare ``httpx.Client`` loop fetching the same pages one after another (same endpoint, page size and
         API key header), parsing the JSON and counting the records, nothing else.
Prints wall time and records/s of each, and ours as a share of the floor's throughput (target >= 80%).
Before any figure, every side is checked against the CRM: ours's rows read back from the database (each
contact once, the CRM's count), the floor's record count, and the records the CRM served (each page once);
a wrong run prints no figure and exits 1.

Then one scheduler cycle of 50 customers (c01..c50), each running the operator once in its own process (as
Airflow runs one process per task), 8 at a time (the executor's parallel slots): each starts its incremental
cursor at the 200th-newest contact, so fetches ~200 records in 2-3 pages into a shared table keyed by
(customer_id, id). Prints the wall time for all of them and the p50 / max per run.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth); a throwaway database is created and dropped.
Run: .venv/bin/python benchmarks/http_import.py [--records N --page-size N --latency-ms MS --customers N
     --parallel N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from crm_server import CrmServer, start_crm_server  # noqa: E402  (test support: the demo CRM on loopback)

PG = "postgresql://postgres@127.0.0.1:5432"
ENDPOINT = "/api/page/contacts"
TABLE = "contacts"
SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer", "required": True},
        {"name": "first_name", "type": "string"},
        {"name": "last_name", "type": "string"},
        {"name": "email", "type": "string"},
        {"name": "company_id", "type": "integer"},
        {"name": "phone", "type": "string"},
        {"name": "updated_at", "type": "datetime", "required": True},
    ]
}
COLUMNS = {
    "customer_id": "VARCHAR(60)",
    "id": "BIGINT",
    "first_name": "VARCHAR(100)",
    "last_name": "VARCHAR(100)",
    "email": "VARCHAR(200)",
    "company_id": "BIGINT",
    "phone": "VARCHAR(40)",
    "updated_at": "TIMESTAMPTZ",
}

OURS = textwrap.dedent(
    """
    import json, resource, sys, time
    from b2b_integrations.config.sql_target import with_target
    from b2b_integrations.operators.http_import import HttpApiImportOperator
    args = json.loads(sys.argv[1])
    op = HttpApiImportOperator(task_id="import_contacts", integration="crm_contacts", flow="contacts", **with_target(args))
    start = time.perf_counter()
    result = op.execute({})
    print(json.dumps({"seconds": time.perf_counter() - start, "pages": result["pages"],
                      "records": result["records_fetched"], "loaded": result["records_loaded"],
                      "quarantined": result["records_quarantined"],
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

FLOOR = textwrap.dedent(
    """
    import json, resource, sys, time
    import httpx
    url, api_key, page_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = time.perf_counter()
    pages = records = 0
    with httpx.Client(headers={"X-API-Key": api_key}, timeout=30.0, trust_env=False) as client:
        page = 1
        while True:
            response = client.get(url, params={"per_page": page_size, "page": page})
            response.raise_for_status()
            body = response.json()
            pages += 1
            records += len(body["data"]["items"])
            if page >= body["meta"]["total_pages"]:
                break
            page += 1
    print(json.dumps({"seconds": time.perf_counter() - start, "pages": pages, "records": records,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def run_json(code: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def operator_args(customer_id: str, page_size: int, start: str | None = None) -> dict[str, Any]:
    incremental: dict[str, Any] = {"cursor_field": "updated_at", "param": "updated_since"}
    if start is not None:
        incremental["start"] = start
    return {
        "customer_id": customer_id,
        "http_conn_id": "bench_crm",
        "auth": {"type": "api_key"},
        "endpoint": ENDPOINT,
        "records_path": "data.items",
        "pagination": {
            "style": "page_number",
            "page_size": page_size,
            "total_pages_path": "meta.total_pages",
        },
        "row_schema": SCHEMA,
        "db_conn_id": "bench_db",
        "table": TABLE,
        "key": ["customer_id", "id"],
        "constants": {"customer_id": customer_id},
        "columns": COLUMNS,
        "create_table": True,
        "incremental": incremental,
    }


def prepare_crm(server: CrmServer, latency_ms: float) -> None:
    server.admin("config", {"latency_ms": latency_ms})
    server.admin("stats/reset")


def one_customer(customer_id: str, args: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One task run in its own process; adds the process wall time (interpreter start and imports too)."""
    started = time.perf_counter()
    result = run_json(OURS, [json.dumps(args)], env)
    result["wall"] = time.perf_counter() - started
    result["customer"] = customer_id
    return result


def main() -> None:
    import psycopg2

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="contacts in the CRM")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=5.0, help="server-side delay of every request")
    parser.add_argument("--customers", type=int, default=50, help="customers polled in one scheduler cycle")
    parser.add_argument("--parallel", type=int, default=8, help="task processes running at once")
    args = parser.parse_args()
    recent = min(200, args.records)  # records each customer fetches in the scheduler cycle

    db = f"b2b_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    print(f"starting the demo CRM with {args.records:,} contacts ...", flush=True)
    server = start_crm_server(contacts=args.records, access_log=False)
    try:
        with tempfile.TemporaryDirectory(prefix="b2b-http-bench-") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
            env.update(
                AIRFLOW_HOME=str(Path(tmp) / "airflow_home"),
                AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
                B2B_DATA_DIR=str(Path(tmp) / "data"),
                AIRFLOW_CONN_BENCH_CRM=json.dumps(
                    {
                        "conn_type": "http",
                        "host": server.host,
                        "port": server.port,
                        "login": server.client_id,
                        "password": server.api_key,
                    }
                ),
                AIRFLOW_CONN_BENCH_DB=f"{PG}/{db}",
            )

            print("ours ...", flush=True)
            prepare_crm(server, args.latency_ms)
            ours = run_json(OURS, [json.dumps(operator_args("bench", args.page_size))], env)
            ours_stats = server.admin_get("stats")

            print("floor ...", flush=True)
            prepare_crm(server, args.latency_ms)
            floor = run_json(FLOOR, [f"{server.url}{ENDPOINT}", server.api_key, str(args.page_size)], env)
            floor_stats = server.admin_get("stats")

            load_after_pair = os.getloadavg()
            # The scheduler cycle: each customer's first run starts at the 200th-newest contact.
            server.admin("config", {"latency_ms": 0})
            start = server.api(
                "GET", "/api/offset/contacts", params={"offset": args.records - recent, "limit": 1}
            ).json()["items"][0]["updated_at"]
            per_customer = server.api(
                "GET", ENDPOINT, params={"updated_since": start, "per_page": args.page_size}
            ).json()["meta"]
            customers = [f"c{i:02d}" for i in range(1, args.customers + 1)]
            print(
                f"{len(customers)} customers, {args.parallel} at a time, "
                f"{per_customer['total']} records / {per_customer['total_pages']} pages each ...",
                flush=True,
            )
            prepare_crm(server, args.latency_ms)
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.parallel) as pool:
                runs = list(
                    pool.map(
                        lambda c: one_customer(c, operator_args(c, args.page_size, start), env), customers
                    )
                )
            cycle_wall = time.perf_counter() - started
            cycle_stats = server.admin_get("stats")
            with psycopg2.connect(f"{PG}/{db}") as conn, conn.cursor() as cur:
                cur.execute(
                    f"SELECT customer_id, count(*), count(DISTINCT id) FROM {TABLE} GROUP BY customer_id"
                )
                loaded = {customer: (n, distinct) for customer, n, distinct in cur.fetchall()}
            cycle_rows = sum(n for customer, (n, _) in loaded.items() if customer != "bench")

        problems = []
        if loaded.get("bench") != (args.records, args.records):
            problems.append(
                f"ours: table holds (rows, ids) {loaded.get('bench')}, the CRM has {args.records:,}"
            )
        if ours["quarantined"]:
            problems.append(f"ours: {ours['quarantined']:,} records quarantined, expected none")
        for label, side, stats in (("ours", ours, ours_stats), ("floor", floor, floor_stats)):
            if side["records"] != args.records or stats["records_served"] != args.records:
                problems.append(
                    f"{label}: {side['records']:,} records read, the CRM served {stats['records_served']:,},"
                    f" it holds {args.records:,}"
                )
        wrong = {c: loaded.get(c) for c in customers if loaded.get(c) != (per_customer["total"],) * 2}
        if wrong:
            problems.append(
                f"cycle: customers whose (rows, ids) differ from {per_customer['total']}: {wrong}"
            )
        if problems:
            raise SystemExit("wrong result, no figures:\n  " + "\n  ".join(problems))

        ours_rate = ours["records"] / ours["seconds"]
        floor_rate = floor["records"] / floor["seconds"]
        print(
            f"\nAPI: {args.records:,} contacts, {args.page_size} per page, {args.latency_ms:g} ms latency per "
            f"request; machine: {os.cpu_count()} cores"
        )
        print(f"  {'':<6} {'seconds':>8} {'records/s':>10} {'pages':>6} {'ms/page':>8} {'peak MiB':>9}")
        for label, side, stats in (("ours", ours, ours_stats), ("floor", floor, floor_stats)):
            print(
                f"  {label:<6} {side['seconds']:>8.1f} {side['records'] / side['seconds']:>10,.0f} "
                f"{side['pages']:>6,} {side['seconds'] / side['pages'] * 1000:>8.1f} {side['peak_mib']:>9.0f}"
                f"   (records {side['records']:,}; server: {stats['requests']:,} requests, "
                f"{stats['records_served']:,} records served)"
            )
        print(f"  ours loaded {ours['loaded']:,}, quarantined {ours['quarantined']:,}")
        print(f"  ours / floor throughput: {ours_rate / floor_rate:.0%} (target >= 80%)")
        print(f"  load average (1, 5, 15 min) after the single import and floor: {load_after_pair}")

        walls = [run["wall"] for run in runs]
        executes = [run["seconds"] for run in runs]
        print(
            f"\nscheduler cycle: {len(runs)} customers, one process each, {args.parallel} in parallel, "
            f"~{per_customer['total']} records / {per_customer['total_pages']} pages each"
        )
        print(f"  wall time for all {len(runs)}: {cycle_wall:.1f} s")
        print(
            f"  per run (process): p50 {statistics.median(walls):.2f} s, max {max(walls):.2f} s;"
            f" of which execute(): p50 {statistics.median(executes):.2f} s, max {max(executes):.2f} s"
        )
        print(
            f"  records loaded {sum(run['loaded'] for run in runs):,} (rows in table {cycle_rows:,}); "
            f"server: {cycle_stats['requests']:,} requests, {cycle_stats['records_served']:,} records served"
        )
        print(f"  load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    finally:
        server.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
