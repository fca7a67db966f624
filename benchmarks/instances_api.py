"""Instances API benchmark: request latencies at N customers and the time from an API change to the DAG
being schedulable, on a real API server and dag-processor (tests/airflow_stack.py: throwaway PostgreSQL
metadata DB; no scheduler, so nothing runs).

The include folder holds N generated customers of benchmarks/parse_dags.py (3 flows each), spread over
16 shard files (``B2B_SHARDS=16``, as a deployment of that size would run). Printed, in milliseconds:

- p50 / p99 of ``GET .../instances/{i}``, ``GET .../status`` and ``PUT .../instances/{i}`` (a config value
  changed with If-Match) for randomly chosen customers, one request at a time;
- floor: ``GET /b2b/health`` (our app's plumbing, no work) and Airflow's own ``GET /api/v2/dags/{dag_id}``
  (an authenticated metadata read), measured in the same run with the same client;
- seconds from the answer of an API write to the change being in the metadata DB, for a new customer's
  instance (its DAGs non-stale with a next run) and for a schedule change (the DAG's timetable), against
  the dag-processor's own parse time of that shard file.

Every answer is checked (status, the value read back, the file on disk); a wrong result exits 1 before
any figure. Run from the repository root::

    .venv/bin/python benchmarks/instances_api.py              # N = 1000
    .venv/bin/python benchmarks/instances_api.py --customers 100 --requests 50
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "plugins"))
from airflow_stack import AirflowStack, start_airflow_stack  # noqa: E402  (test support)
from parse_dags import INTEGRATION, child_env, make_customers, run_child, write_ours  # noqa: E402

API = "/b2b/api/v1"


def fail(message: str) -> None:
    print(f"WRONG RESULT: {message}", file=sys.stderr)
    sys.exit(1)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f}  p99 {p99 * 1000:7.1f}  (n={len(ordered)})"


def timed(client: httpx.Client, method: str, url: str, **kwargs: object) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    answer = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    return time.perf_counter() - start, answer


def wait(stack: AirflowStack, what: str, check: object, timeout: float = 300) -> float:
    start = time.perf_counter()
    stack.wait_for(what, check, timeout=timeout, every=0.1)
    return time.perf_counter() - start


def latencies(
    stack: AirflowStack, client: httpx.Client, ids: list[str], requests: int
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in ("health", "airflow dag", "get", "status", "put")}
    rng = random.Random(20261203)
    for _ in range(requests):
        customer = rng.choice(ids)
        base = f"{API}/customers/{customer}/instances/{INTEGRATION}"
        seconds, answer = timed(client, "GET", "/b2b/health")
        found["health"].append(seconds) if answer.status_code == 200 else fail(f"health {answer.status_code}")
        seconds, answer = timed(client, "GET", f"/api/v2/dags/{customer}__{INTEGRATION}__nightly")
        found["airflow dag"].append(seconds) if answer.status_code == 200 else fail(
            f"airflow dag {answer.text}"
        )
        seconds, answer = timed(client, "GET", base)
        if answer.status_code != 200 or answer.json()["customer"] != customer:
            fail(f"GET {base}: {answer.status_code} {answer.text[:200]}")
        found["get"].append(seconds)
        settings, etag = answer.json()["settings"], answer.headers["etag"]
        seconds, answer = timed(client, "GET", base + "/status")
        if answer.status_code != 200 or len(answer.json().get("flows", [])) != 3:
            fail(f"GET {base}/status: {answer.status_code} {answer.text[:300]}")
        found["status"].append(seconds)
        wanted = settings["config"]["low_stock_threshold"] + 1
        body = {**settings, "config": {**settings["config"], "low_stock_threshold": wanted}}
        seconds, answer = timed(client, "PUT", base, json=body, headers={"If-Match": etag})
        if answer.status_code != 200 or answer.json()["settings"]["config"]["low_stock_threshold"] != wanted:
            fail(f"PUT {base}: {answer.status_code} {answer.text[:300]}")
        on_disk = (Path(stack.env["B2B_INCLUDE_DIR"]) / "customers" / f"{customer}.yaml").read_text()
        if f"low_stock_threshold: {wanted}" not in on_disk:
            fail(f"{customer}'s file does not hold the written value")
        found["put"].append(seconds)
    return found


def shard_parse(stack: AirflowStack, customer: str) -> float:
    """The floor: parse + serialize of the customer's shard file in a fresh process, what the dag-processor
    must do for the change whatever queues it (imports not counted)."""
    from b2b_integrations.factory.shards import shard_file, shard_of

    home = Path(tempfile.mkdtemp(prefix="b2b-bench-shard-"))
    env = child_env(home) | {
        "B2B_INCLUDE_DIR": stack.env["B2B_INCLUDE_DIR"], "B2B_SHARDS": "16", "B2B_LAST_VALID_DIR": "off",
        "B2B_DATA_DIR": str(home / "b2b_data"), "PYTHONPATH": f"{REPO / 'benchmarks'}:{REPO / 'plugins'}",
    }  # fmt: skip
    try:
        report = run_child(Path(sys.executable), REPO / "dags" / shard_file(shard_of(customer, 16)), env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if report["import_errors"] or report["dags"] < 3:
        fail(f"parsing {customer}'s shard: {report['dags']} DAGs, {report['import_errors']}")
    return float(report["parse_s"] + report["serialize_s"])


def propagation(
    stack: AirflowStack, client: httpx.Client, rounds: int
) -> tuple[list[float], list[float], list[float]]:
    created, rescheduled, floors = [], [], []
    template = client.get(f"{API}/customers/customer_0000/instances/{INTEGRATION}").json()["settings"]
    for i in range(rounds):
        customer = f"bench_new_{i:02d}"
        if client.post(f"{API}/customers", json={"id": customer, "name": customer}).status_code != 201:
            fail(f"creating customer {customer}")
        body = {k: v for k, v in template.items() if k != "version"} | {"active": True}
        answer = client.put(f"{API}/customers/{customer}/instances/{INTEGRATION}", json=body)
        if answer.status_code != 201:
            fail(f"creating {customer}'s instance: {answer.status_code} {answer.text[:300]}")
        query = (
            f"SELECT count(*) FROM dag WHERE dag_id LIKE '{customer}\\_\\_%' AND NOT is_stale "
            "AND next_dagrun_create_after IS NOT NULL"
        )
        created.append(wait(stack, f"{customer}'s DAGs", lambda q=query: stack.sql(q)[0][0] == 3))
        current = client.get(f"{API}/customers/{customer}/instances/{INTEGRATION}")
        schedule = f"{7 + i} 3 * * *"
        changed = {**current.json()["settings"], "flows": {"nightly": {"schedule": schedule}}}
        answer = client.put(
            f"{API}/customers/{customer}/instances/{INTEGRATION}", json=changed,
            headers={"If-Match": current.headers["etag"]},
        )  # fmt: skip
        if answer.status_code != 200:
            fail(f"changing {customer}'s schedule: {answer.text[:300]}")
        query = f"SELECT timetable_summary FROM dag WHERE dag_id = '{customer}__{INTEGRATION}__nightly'"
        rescheduled.append(
            wait(stack, "the new schedule", lambda q=query, s=schedule: s in (stack.sql(q)[0][0] or ""))
        )
        floors.append(shard_parse(stack, customer))
    return created, rescheduled, floors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="b2b-bench-instances-"))
    customers = make_customers(args.customers)
    include = write_ours(root, customers)
    stack = start_airflow_stack(include, {"B2B_SHARDS": "16"}, components=("api-server", "dag-processor"))
    try:
        expected = args.customers * 3
        setup = wait(
            stack,
            f"{expected} DAGs",
            lambda: stack.sql("SELECT count(*) FROM dag WHERE NOT is_stale")[0][0] >= expected,
            timeout=1800,
        )
        token = stack.token("admin")
        with httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            found = latencies(stack, client, [c.id for c in customers], args.requests)
            created, rescheduled, floors = propagation(stack, client, args.rounds)
        load = os.getloadavg()
        print(f"instances API at N = {args.customers} customers x 3 flows, 16 shards ({os.cpu_count()} cores, "
              f"load average {load[0]:.1f} / {load[1]:.1f})")  # fmt: skip
        print(f"  first full parse of every shard: {setup:.0f} s")
        print("  request latency, ms, one at a time:")
        for name in ("health", "airflow dag", "get", "status", "put"):
            label = {
                "health": "floor: GET /b2b/health",
                "airflow dag": "floor: Airflow GET /api/v2/dags/{id}",
            }.get(name, f"ours: {name.upper() if name != 'status' else 'GET status'}")
            print(f"    {label:40s} {percentiles(found[name])}")
        print("  API answer -> in the metadata DB, seconds:")
        print(f"    new instance: DAGs schedulable       {', '.join(f'{s:.1f}' for s in created)}")
        print(f"    schedule change: new timetable       {', '.join(f'{s:.1f}' for s in rescheduled)}")
        print(f"    floor: parse + serialize its shard   {', '.join(f'{s:.1f}' for s in floors)}")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
