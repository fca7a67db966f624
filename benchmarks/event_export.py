"""Event-driven export: app events published once, delivered by every customer's flow to its receiver.

Deploys N customers (default 20) with one ``app_event`` flow each (``invoice.paid`` -> ``deliver_events``,
a Standard Webhooks-signed POST) on a real Airflow (tests/airflow_stack.py: API server, scheduler with
LocalExecutor, dag-processor, throwaway PostgreSQL metadata DB; our app's database, holding the delivery
ledgers, is another throwaway PostgreSQL database). The receivers are one bare ASGI app under uvicorn (its
own process) with a path per customer that records each delivery's ``webhook-id`` and arrival time.

The publisher posts E events (default 10,000) to ``POST /b2b/events`` with a token, in requests of 500,
and notes when each was acknowledged. ``--fanout account`` (default) gives each event one customer's
account id, round robin, so each customer receives E/N; ``--fanout all`` subscribes every customer to
every event (E x N deliveries). Printed: deliveries per second (first publish to last delivery),
publish-to-delivery latency p50 / p99 / max (receiver arrival minus publish acknowledgement; one host, one
clock), peak memory (RSS of the Airflow processes together, sampled every 0.5 s, and of the largest one).
Before any figure, the run is checked: every expected (customer, event) arrived (the receiver counts
webhook-ids), none arrived elsewhere, none twice unless the ledger shows its send was retried (Standard
Webhooks' at-least-once, same webhook-id), every one recorded ``delivered`` in the ledger, every consumer
run succeeded; a wrong run prints what is wrong and exits 1.

Needs PostgreSQL on 127.0.0.1:5432. Takes 2-5 minutes with the defaults on 2 cores.
Run: .venv/bin/python benchmarks/event_export.py [--events E --customers N --fanout account|all]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from airflow_stack import AirflowStack, start_airflow_stack  # noqa: E402  (test support)
from helpers import PG, write_include  # noqa: E402
from servers import free_port  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"benchmark-export-signing-key-01").decode()
PUBLISH_BATCH = 500

RECEIVER_APP = textwrap.dedent(
    """
    import json, time
    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if scope["method"] == "POST":
            headers = dict(scope["headers"])
            seen.append((scope["path"].rsplit("/", 1)[-1], headers.get(b"webhook-id", b"").decode(), time.time()))
            body = b'{"received":true}'
        else:
            body = json.dumps(seen).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    """
)


def template() -> dict[str, Any]:
    return {
        "name": "bench_export",
        "config": {"account_id": {"type": "string"}},
        "connections": {"hook": {"type": "http"}, "app_db": {"type": "postgres"}},
        "flows": {
            "invoices_out": {
                "trigger": {"type": "app_event", "events": ["invoice.paid"]},
                "steps": [
                    {
                        "id": "push",
                        "kind": "deliver_events",
                        "db_connection": "app_db",
                        "key": "data.invoice_id",
                        "concurrency": 8,
                        "target": {"type": "webhook", "connection": "hook"},
                    }
                ],
            }
        },
    }


def rss_sampler(stack: AirflowStack, stop: threading.Event, peaks: dict[str, int]) -> None:
    sessions = {proc.pid for proc in stack.procs.values()}
    while not stop.is_set():
        total = largest = 0
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) not in sessions:  # the session id: each component leads its own
                    continue
                rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
            total += rss
            largest = max(largest, rss)
        peaks["total"] = max(peaks.get("total", 0), total)
        peaks["largest"] = max(peaks.get("largest", 0), largest)
        stop.wait(0.5)


def ended_runs(stack: AirflowStack) -> dict[str, int]:
    """The consumer runs by state, once none is queued or running (or after 5 minutes).

    A delivery reaches its receiver before its ledger row commits and its run ends, so the ledger and the
    runs are checked only then; a run still going after the wait shows as not successful."""
    unfinished = "SELECT count(*) FROM dag_run WHERE dag_id LIKE 'exp%' AND state IN ('queued', 'running')"
    try:
        stack.wait_for("the consumer runs to end", lambda: stack.sql(unfinished)[0][0] == 0, timeout=300)
    except TimeoutError:
        pass
    return dict(stack.sql("SELECT state, count(*) FROM dag_run WHERE dag_id LIKE 'exp%' GROUP BY state"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--fanout", choices=("account", "all"), default="account")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    customers = [f"exp{i:02d}" for i in range(args.customers)]
    import psycopg2

    app_db = f"b2b_bench_app_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{app_db}"')
    work = Path(tempfile.mkdtemp(prefix="b2b-bench-export-"))
    receiver_port = free_port()
    (work / "receiver.py").write_text(RECEIVER_APP)
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "receiver:app",
            "--port",
            str(receiver_port),
            "--log-level",
            "warning",
        ],
        cwd=work,
        start_new_session=True,
    )
    flow = template()
    if args.fanout == "account":
        flow["flows"]["invoices_out"]["trigger"]["filter"] = {"account_id": "${config.account_id}"}
    include = write_include(
        work / "include",
        {"bench_export": flow},
        {
            c: {
                "id": c,
                "name": c,
                "integrations": {
                    "bench_export": {
                        "config": {"account_id": c},
                        "connections": {"hook": f"{c}_hook", "app_db": "bench_app"},
                    }
                },
            }
            for c in customers
        },
    )
    env = {"AIRFLOW_CONN_BENCH_APP": f"{PG}/{app_db}", "AIRFLOW__CORE__PARALLELISM": "8"}
    for c in customers:
        env[f"AIRFLOW_CONN_{c.upper()}_HOOK"] = json.dumps(
            {"conn_type": "http", "host": f"http://127.0.0.1:{receiver_port}/hooks/{c}", "password": SECRET}
        )
    print(f"starting Airflow with {len(customers)} customers ...", flush=True)
    stack = start_airflow_stack(include, env)
    stop, peaks = threading.Event(), {}
    try:
        stack.wait_for(
            "every customer's DAG",
            lambda: (
                stack.sql("SELECT count(*) FROM dag WHERE dag_id LIKE 'exp%__bench_export__invoices_out'")[0][
                    0
                ]
                == len(customers)
            ),
            timeout=180,
        )
        token = stack.token("admin")
        sampler = threading.Thread(target=rss_sampler, args=(stack, stop, peaks), daemon=True)
        sampler.start()
        events = [
            {
                "type": "invoice.paid",
                "id": f"evt_{i:06d}_{uuid.uuid4().hex[:6]}",
                "occurred_at": "2026-11-29T08:00:00Z",
                "data": {
                    "account_id": customers[i % len(customers)],
                    "invoice_id": f"INV-{i:06d}",
                    "amount_cents": i,
                },
            }
            for i in range(args.events)
        ]
        acked: dict[str, float] = {}
        print(f"publishing {len(events):,} events ({args.fanout} fan-out) ...", flush=True)
        t0 = time.time()
        with httpx.Client(timeout=120, trust_env=False) as client:
            for start in range(0, len(events), PUBLISH_BATCH):
                batch = events[start : start + PUBLISH_BATCH]
                answer = client.post(
                    f"{stack.url}/b2b/events",
                    json={"events": batch},
                    headers={"Authorization": f"Bearer {token}"},
                )
                answer.raise_for_status()
                now = time.time()
                acked.update((e["id"], now) for e in batch)
        published = time.time() - t0
        expected = {
            (c, e["id"])
            for e in events
            for c in (customers if args.fanout == "all" else [e["data"]["account_id"]])
        }
        print(
            f"published in {published:.1f} s ({len(events) / published:,.0f} events/s); waiting for "
            f"{len(expected):,} deliveries ...",
            flush=True,
        )
        deadline = time.time() + args.timeout
        received: list[list[Any]] = []
        while time.time() < deadline:
            received = httpx.get(f"http://127.0.0.1:{receiver_port}/seen", timeout=60).json()
            if len({(c, i) for c, i, _ in received}) >= len(expected):
                break
            time.sleep(2)
        stop.set()
        runs = ended_runs(stack)
        # Read again once every run has ended, so a late second delivery is counted too.
        received = httpx.get(f"http://127.0.0.1:{receiver_port}/seen", timeout=60).json()
        counts = Counter((c, i) for c, i, _ in received)
        first_arrival = {}
        for c, i, at in received:
            first_arrival.setdefault((c, i), at)
        latencies = sorted(first_arrival[k] - acked[k[1]] for k in first_arrival if k in expected)
        end = max((at for _, _, at in received), default=time.time())
        lost = len(expected - set(counts))
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        unexpected = len(set(counts) - expected)
        # Why a duplicate happens: a send whose answer did not arrive (timeout) is sent again, with the same
        # webhook-id; the ledger says how many events needed more than one attempt, and which.
        with psycopg2.connect(f"{PG}/{app_db}") as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT customer_id, event_id, attempts FROM b2b_event_deliveries WHERE attempts > 1 ORDER BY 1, 2"
            )
            retried = cur.fetchall()
            cur.execute("SELECT customer_id, event_id, status FROM b2b_event_deliveries")
            ledger = {(c, i): status for c, i, status in cur.fetchall()}
        doubled = {(c, i) for (c, i), n in counts.items() if n > 1}
        explained = doubled & {(c, i) for c, i, _ in retried}
        # The figures mean something only for a run that delivered every event to its customer and no other,
        # each once (or again only after a send the ledger shows was retried: Standard Webhooks' at-least-
        # once, same webhook-id), recorded delivered in the ledger, by runs that all succeeded.
        problems = []
        if lost or unexpected or doubled - explained:
            problems.append(
                f"receivers: lost {lost}, unexpected {unexpected}, duplicated without a retry "
                f"{len(doubled - explained)} (of {len(expected):,} expected)"
            )
        if {k: v for k, v in ledger.items() if k in expected} != dict.fromkeys(expected, "delivered"):
            missing = sum(1 for k in expected if ledger.get(k) != "delivered")
            problems.append(f"ledger: {missing:,} expected deliveries not recorded 'delivered'")
        if set(runs) != {"success"}:
            problems.append(f"consumer runs not all successful: {runs}")
        if problems:
            raise SystemExit("wrong result, no figures:\n  " + "\n  ".join(problems))
        print()
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()} at the end")
        print(
            f"events {len(events):,}, customers {len(customers)}, fan-out {args.fanout}: {len(expected):,} deliveries expected"
        )
        print(
            f"delivered {len(first_arrival):,} in {end - t0:.1f} s from the first publish: {len(first_arrival) / (end - t0):,.0f} deliveries/s"
        )
        if latencies:
            p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
            print(
                f"publish -> delivery: p50 {statistics.median(latencies):.2f} s, p99 {p(0.99):.2f} s, max {latencies[-1]:.2f} s"
            )
        print(
            f"memory: Airflow processes together peak {peaks.get('total', 0) / 2**20:,.0f} MiB, largest one {peaks.get('largest', 0) / 2**20:,.0f} MiB"
        )
        print(f"consumer runs: {runs}")
        print(
            f"receivers: lost 0, unexpected 0, duplicated {duplicates} (each after a send the ledger shows "
            f"was retried: {len(retried)} events needed more than one attempt); ledger: every delivery recorded"
        )
    finally:
        stop.set()
        stack.stop()
        receiver.terminate()
        receiver.wait(timeout=10)
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{app_db}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
