"""Sync calls: end-to-end latency of a one-step synchronous flow through our endpoint vs Airflow's own floor.

Deploys customer ``benchco`` with a one-step template (``charge``: one ``http_call`` to the demo CRM's
payment processor, the demo app as a uvicorn subprocess on loopback) on a real Airflow (tests/airflow_stack.py:
throwaway PostgreSQL metadata DB, API server, scheduler with LocalExecutor, dag-processor), and measures,
sequentially and interleaved call by call so that drift hits all three alike:

- **ours**: ``POST /b2b/sync/benchco/bench_sync/charge`` with ``Prefer: wait=120``, from the send to the
  200 answer carrying the result;
- **floor, same DAG**: Airflow's ``POST /api/v2/dags/{id}/dagRuns`` (the same conf) then
  ``GET .../dagRuns/{run}/wait?interval=<poll>&result=charge`` until the final line; ``/wait`` waits for
  the run's state, which includes the flow's callback teardown task;
- **floor, twin DAG**: the same, on a twin flow with the same step and a ``manual`` trigger (no callback
  task): Airflow running this one step, nothing of ours in the path. ``/wait`` answers once the scheduler
  has marked the run finished, one scheduler loop after the step ended;
- **floor, task poll**: the twin DAG again, but the client polls the step's state over the REST API every
  ``--poll`` seconds and then reads its XCom: the fastest a client of Airflow's public API can get the
  answer, and what our endpoint does inside the API server. Our overhead is computed against this one.

Then where the time goes, per phase and per path, from the metadata DB's timestamps of each run (same host,
same clock): request -> run queued (the API), run queued -> step queued (the scheduler creating and
scheduling the run), step queued -> step running (the executor starting the task process), step running ->
step done (the task: DAG file parsed, operator run, HTTP call), step done -> answer (noticing the end and
answering); and the task log of one more call of ours, line by line, for where the step's process spends
its time. ``--filler N`` more customers (default 20) get the same template, so the DAG file holds
2 x (N + 1) DAGs as a real deployment holds many.

The whole measurement is repeated for each variant (``--variants``), each on a fresh Airflow:
``1.0`` and ``0.2`` are ``[scheduler] scheduler_idle_sleep_time`` (Airflow's default, then the setting we
document for sync flows); ``0.2:ctx`` adds a DAG file that builds only the DAG a task process asks for
(Airflow's parsing context), where the shipped factory file builds every customer's DAGs in every task.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth). About 5 minutes per variant with the defaults on 2 cores.
Run: .venv/bin/python benchmarks/sync_calls.py [--calls N --warmup W --poll S --filler N --variants 1.0,0.2,0.2:ctx]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from airflow_stack import AirflowStack, start_airflow_stack  # noqa: E402  (test support)
from crm_server import CrmServer, start_crm_server  # noqa: E402
from helpers import write_include  # noqa: E402

CUSTOMER, INTEGRATION = "benchco", "bench_sync"
SYNC_DAG = f"{CUSTOMER}__{INTEGRATION}__charge"
TWIN_DAG = f"{CUSTOMER}__{INTEGRATION}__charge_manual"
URL = f"/b2b/sync/{CUSTOMER}/{INTEGRATION}/charge"
STEP = {
    "id": "charge",
    "kind": "http_call",
    "connection": "payments_api",
    "endpoint": "/api/payments/charges",
    "auth": {"type": "api_key"},
    "body": {
        "amount": "amount",
        "currency": "currency",
        "payment_token": "payment_token",
        "reference": "order_id",
    },
    "response_fields": {"charge_id": "id", "charge_status": "status"},
    "keep_fields": ["order_id"],
    "failure_statuses": [402],
    "failure_message_path": "error.message",
    "idempotency_header": "Idempotency-Key",
}
TEMPLATE = {
    "name": INTEGRATION,
    "connections": {"payments_api": {"type": "http"}},
    "defaults": {"retries": 0},
    "flows": {
        "charge": {"trigger": {"type": "sync", "max_timeout_seconds": 300}, "steps": [STEP]},
        "charge_manual": {"trigger": {"type": "manual"}, "max_active_runs": 16, "steps": [STEP]},
    },
}
PATHS = ("ours", "floor, same DAG", "floor, twin DAG", "floor, task poll")
PHASES = (
    ("request -> run queued", "t0", "queued_at"),
    ("run queued -> step queued", "queued_at", "ti_queued"),
    ("step queued -> step running", "ti_queued", "ti_start"),
    ("step running -> step done", "ti_start", "ti_end"),
    ("step done -> answer", "ti_end", "t1"),
)


def _order() -> dict[str, Any]:
    order_id = f"bench-{uuid.uuid4().hex[:10]}"
    return {"order_id": order_id, "amount": 9.99, "currency": "EUR", "payment_token": "tok_visa"}


def _conf(order: dict[str, Any]) -> dict[str, Any]:
    from b2b_integrations.sync.protocol import sync_conf

    return sync_conf(order, None, None, "bench")


def ours(stack: AirflowStack, client: httpx.Client, auth: dict[str, str]) -> tuple[str, float, float]:
    order = _order()
    t0 = time.time()
    response = client.post(stack.url + URL, json=order, headers={**auth, "Prefer": "wait=120"})
    t1 = time.time()
    body = response.json()
    if response.status_code != 200 or body["result"]["order_id"] != order["order_id"]:
        raise RuntimeError(f"our endpoint answered {response.status_code}: {response.text[:500]}")
    return body["run_id"], t0, t1


def _trigger(
    stack: AirflowStack, client: httpx.Client, auth: dict[str, str], dag_id: str, order: dict[str, Any]
) -> str:
    """Airflow's own REST trigger of the DAG with the order as conf; the run id."""
    trigger = client.post(
        f"{stack.url}/api/v2/dags/{dag_id}/dagRuns",
        json={"logical_date": None, "conf": _conf(order)},
        headers=auth,
    )
    trigger.raise_for_status()
    return trigger.json()["dag_run_id"]


def floor(
    stack: AirflowStack, client: httpx.Client, auth: dict[str, str], dag_id: str, poll: float
) -> tuple[str, float, float]:
    order = _order()
    t0 = time.time()
    run_id = _trigger(stack, client, auth, dag_id, order)
    last: dict[str, Any] = {}
    with client.stream(
        "GET",
        f"{stack.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/wait",
        params={"interval": poll, "result": "charge"},
        headers=auth,
    ) as response:
        for line in response.iter_lines():
            if line.strip():
                last = json.loads(line)
    t1 = time.time()
    if (
        last.get("state") != "success"
        or last["results"]["charge"]["result"][0]["order_id"] != order["order_id"]
    ):
        raise RuntimeError(f"Airflow's /wait ended with {last}")
    return run_id, t0, t1


def floor_poll(
    stack: AirflowStack, client: httpx.Client, auth: dict[str, str], dag_id: str, poll: float
) -> tuple[str, float, float]:
    order = _order()
    t0 = time.time()
    run_id = _trigger(stack, client, auth, dag_id, order)
    task = f"{stack.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/charge"
    while True:
        response = client.get(task, headers=auth)
        state = response.json().get("state") if response.status_code == 200 else None
        if state == "success":
            break
        if state in ("failed", "upstream_failed"):
            raise RuntimeError(f"the step ended {state}")
        time.sleep(poll)
    value = client.get(f"{task}/xcomEntries/return_value", headers=auth).json()["value"]
    t1 = time.time()
    if value["result"][0]["order_id"] != order["order_id"]:
        raise RuntimeError(f"unexpected XCom {value}")
    return run_id, t0, t1


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def timings(stack: AirflowStack, dag_id: str, run_id: str, t0: float, t1: float) -> dict[str, float | None]:
    [(queued_at,)] = stack.sql(
        f"SELECT queued_at FROM dag_run WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'"
    )
    [(ti_queued, ti_start, ti_end)] = stack.sql(
        "SELECT queued_dttm, start_date, end_date FROM task_instance "
        f"WHERE dag_id = '{dag_id}' AND run_id = '{run_id}' AND task_id = 'charge'"
    )
    return {
        "t0": t0,
        "queued_at": _epoch(queued_at),
        "ti_queued": _epoch(ti_queued),
        "ti_start": _epoch(ti_start),
        "ti_end": _epoch(ti_end),
        "t1": t1,
    }


def task_timeline(stack: AirflowStack, dag_id: str, run_id: str) -> list[tuple[float, str]]:
    """(seconds since the first line, event) of the step's task log: where its process spends its time."""
    logs = list((stack.home / "logs").glob(f"dag_id={dag_id}/run_id={run_id}/task_id=charge/attempt=*.log"))
    events: list[tuple[float, str]] = []
    for line in logs[0].read_text().splitlines() if logs else []:
        try:
            entry = json.loads(line)
            when = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        events.append((when, str(entry.get("event", ""))[:90]))
    return [(when - events[0][0], event) for when, event in events] if events else []


def idle_cpu(stack: AirflowStack, seconds: float) -> float:
    """CPU used by the scheduler's process group (it and its executor's workers) while nothing runs, as a
    share of one core: what a shorter idle sleep costs."""
    pgid = stack.procs["scheduler"].pid
    tick = os.sysconf("SC_CLK_TCK")

    def used() -> float:
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # field 5 of /proc/<pid>/stat: the process group
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / tick

    before, start = used(), time.monotonic()
    time.sleep(seconds)
    return (used() - before) / (time.monotonic() - start)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# Benchmark only: the factory building just the DAG that a task process parses the file for.
PARSING_CONTEXT_DAG_FILE = """
import os
from airflow.sdk import get_parsing_context
from b2b_integrations.config.loader import load_project
from b2b_integrations.factory.build import build_dag
from b2b_integrations.factory.planner import plan_project

_wanted = get_parsing_context().dag_id
for _plan in plan_project(load_project(os.environ["B2B_INCLUDE_DIR"])):
    if _wanted is None or _plan.dag_id == _wanted:
        globals()[_plan.dag_id] = build_dag(_plan)
"""


def measure(crm: CrmServer, variant: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    idle_sleep, _, option = variant.partition(":")
    customers = {
        name: {
            "id": name,
            "name": name,
            "integrations": {INTEGRATION: {"connections": {"payments_api": "bench_pay"}}},
        }
        for name in [CUSTOMER, *(f"filler{i:03d}" for i in range(args.filler))]
    }
    folder = tmp / variant.replace(":", "-").replace(".", "_")
    include = write_include(folder / "include", {INTEGRATION: TEMPLATE}, customers)
    api = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": crm.port, "password": crm.api_key})
    env = {
        "AIRFLOW_CONN_BENCH_PAY": api,
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": idle_sleep,
        "B2B_SYNC_POLL_SECONDS": str(args.poll),
    }
    if option == "ctx":
        (folder / "dags").mkdir()
        (folder / "dags" / "b2b_integrations_dags.py").write_text(PARSING_CONTEXT_DAG_FILE)
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder / "dags")
    print(f"\n== variant {variant}: starting Airflow ({2 * len(customers)} DAGs) ...", flush=True)
    stack = start_airflow_stack(include, env)
    try:
        for dag_id in (SYNC_DAG, TWIN_DAG):
            stack.wait_for(
                f"{dag_id} parsed", lambda d=dag_id: stack.sql(f"SELECT 1 FROM dag WHERE dag_id = '{d}'")
            )
        auth = {"Authorization": f"Bearer {stack.token()}"}
        cpu = idle_cpu(stack, args.idle_seconds)
        samples: dict[str, list[dict[str, float | None]]] = {path: [] for path in PATHS}
        with httpx.Client(timeout=300, trust_env=False) as client:
            calls = {
                "ours": lambda: (SYNC_DAG, *ours(stack, client, auth)),
                "floor, same DAG": lambda: (SYNC_DAG, *floor(stack, client, auth, SYNC_DAG, args.poll)),
                "floor, twin DAG": lambda: (TWIN_DAG, *floor(stack, client, auth, TWIN_DAG, args.poll)),
                "floor, task poll": lambda: (TWIN_DAG, *floor_poll(stack, client, auth, TWIN_DAG, args.poll)),
            }
            for i in range(args.warmup + args.calls):
                for path in PATHS:
                    dag_id, run_id, t0, t1 = calls[path]()
                    if i >= args.warmup:
                        samples[path].append(timings(stack, dag_id, run_id, t0, t1))
                    # Let the run's callback teardown finish so calls do not overlap.
                    stack.wait_for(
                        "idle DAGs",
                        lambda: (
                            stack.sql("SELECT count(*) FROM dag_run WHERE state IN ('queued', 'running')")
                            == [(0,)]
                        ),
                    )
                print(
                    f"  call {i + 1}/{args.warmup + args.calls}{' (warm-up)' if i < args.warmup else ''}",
                    flush=True,
                )
            run_id = ours(stack, client, auth)[0]
        return {"samples": samples, "timeline": task_timeline(stack, SYNC_DAG, run_id), "idle_cpu": cpu}
    finally:
        stack.stop()


def report(variant: str, measured: dict[str, Any]) -> None:
    samples: dict[str, list[dict[str, float | None]]] = measured["samples"]
    idle_sleep, _, option = variant.partition(":")
    extra = ", task processes build only their DAG (parsing context)" if option == "ctx" else ""
    print(f"\n-- scheduler_idle_sleep_time = {idle_sleep} s{extra}; {len(samples['ours'])} calls per path")
    print(f"scheduler (with its executor) while idle: {measured['idle_cpu'] * 100:.1f}% of a core")
    totals = {path: [s["t1"] - s["t0"] for s in rows] for path, rows in samples.items()}  # type: ignore[operator]
    print(f"{'path':<18} {'p50 s':>7} {'p95 s':>7} {'min s':>7} {'max s':>7}")
    for path, values in totals.items():
        print(
            f"{path:<18} {_pct(values, 0.5):7.2f} {_pct(values, 0.95):7.2f} {min(values):7.2f} {max(values):7.2f}"
        )
    for floor_path in PATHS[1:]:
        base = _pct(totals[floor_path], 0.5)
        print(f"ours vs {floor_path} at p50: {(_pct(totals['ours'], 0.5) / base - 1) * 100:+.1f}%")
    print("where the time goes (p50 per phase, s):")
    print(f"{'phase':<30} " + " ".join(f"{p:>16}" for p in PATHS))
    for name, start, end in PHASES:
        cells = []
        for path in PATHS:
            values = [s[end] - s[start] for s in samples[path] if s[end] is not None and s[start] is not None]  # type: ignore[operator]
            cells.append(f"{statistics.median(values):16.3f}" if values else f"{'-':>16}")
        print(f"{name:<30} " + " ".join(cells))
    print("the step's task log, one more call of ours (s since its first line):")
    for offset, event in measured["timeline"]:
        print(f"  {offset:6.3f}  {event}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20, help="measured calls per path and setting")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured calls per path first")
    parser.add_argument("--poll", type=float, default=0.1, help="our poll interval and /wait's interval (s)")
    parser.add_argument("--filler", type=int, default=20, help="more customers with the same template")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="how long to measure idle CPU")
    parser.add_argument(
        "--variants", default="1.0,0.2,0.2:ctx", help="scheduler_idle_sleep_time[:ctx] values to compare"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "plugins"))
    variants = [v.strip() for v in args.variants.split(",")]
    crm = start_crm_server(contacts=1, companies=1, invoices=1, access_log=False)
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="b2b-bench-sync-") as tmp:
            for variant in variants:
                results[variant] = measure(crm, variant, args, Path(tmp))
    finally:
        crm.stop()
    for variant, measured in results.items():
        report(variant, measured)


if __name__ == "__main__":
    main()
