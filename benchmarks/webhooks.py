"""Webhook receiver: ack latency and throughput of signed webhooks on a real Airflow vs a bare uvicorn floor.

Deploys one customer (``benchco``) with the shipped ``billing_webhooks`` template on a real Airflow
(tests/airflow_stack.py: throwaway PostgreSQL metadata DB, the API server with Airflow's default of one
uvicorn worker, the dag-processor), and drives ``POST /b2b/webhooks/benchco/billing_webhooks/invoice_events``
from a separate sender process (httpx async on loopback, every delivery signed with ``standardwebhooks``):
- fixed rate: N deliveries (default 1,000) at R per second (default 100), open loop: delivery i is sent at
  t0 + i/R whatever the earlier answers do; prints accepted/s, p50 / p99 / max ack latency (from the send
  to the answer), the statuses and the sender's worst lag behind its schedule (target: p99 < 50 ms at
  100 req/s);
- saturation: C deliveries in flight at all times (default 16), each sent as soon as the previous one is
  answered, for D seconds (default 10) or M requests; prints 2xx/s and the latencies; then checks that no
  event was lost: the message ids answered 2xx are exactly those of the receipts (``b2b_webhook_receipts``)
  and of the inbox asset's events (``asset_event``), with no duplicates (the fixed rate's are checked too);
- floors: the same two loads against two plain ASGI apps on uvicorn (as many workers as the API server,
  same host, uvloop/httptools like it): the *bare* floor reads the body and answers 202, no work (at
  saturation it is bound by the sender, which uses a whole core: it measures the sender, not a server);
  the *work* floor also verifies the Standard Webhooks signature (hmac, constant-time compare) and inserts
  one row per request into PostgreSQL (``INSERT ... ON CONFLICT (message_id) DO NOTHING``, autocommit, a
  pool of 8 connections per worker), the least a receiver that acknowledges only what it stored must do;
  prints ours / each floor's throughput at saturation (target >= 30% of the bare floor, as before);
- webhook -> run queued: only now is a scheduler started (LocalExecutor). It first consumes the backlog the
  loads left on the inbox (the time is printed); then K single deliveries (default 5) are sent, each S s
  (default 3) after the consumer DAG is idle, and for each the time from its 202 (sender's clock) to the
  ``queued_at`` of the asset-triggered run that consumed its event (``dagrun_asset_event``; else the first
  such run queued after the 202) is printed as p50 / max, with the runs' own durations. The DAG has
  max_active_runs=1 and Airflow defers creating an asset-triggered run while one is active, hence the wait
  for an idle DAG: without it the figure would include the previous run's duration.
For each load, also printed: the CPU used meanwhile by the server (its process group) and by PostgreSQL
(all its processes, so any other work it does on this host too) as a share of one core, the server's CPU
ms per request, the sender's CPU (near 100%: the sender is the limit, so that server can do more), the
whole host's busy CPU (100% per core; more than the three together is other work on the host, which makes
the figures noisy), the longest time with no answer at all ("gap": a pause of the whole server process
shows here), and for ours the latency inside the API server from its access log (time spent in the app,
told apart from the client and the loopback).
The scheduler is kept out of the load phases on purpose: with it, the queued events start runs whose task
processes compete with the API server for the same cores, so the ack figures would measure the machine
rather than the receiver; the dag-processor alone creates the inbox asset (DAGs are unpaused at creation in
this stack), which is all the receiver needs. The customer's app database (for the load step of the runs in
the last phase) is a throwaway PostgreSQL database, dropped at the end; the end-to-end row count is printed.
Before any figure is printed the run is checked: every answer a 2xx, every 2xx of ours stored once as a
receipt and as an inbox event (the work floor's rows likewise), the backlog drained, every single delivery
run to success and every stored delivery loaded once into the customer's table; a wrong run prints what is
wrong instead and exits 1.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth). Everything runs on this host, so the sender, the server and
PostgreSQL share its cores. Takes about 2 minutes with the defaults.
Run: .venv/bin/python benchmarks/webhooks.py [--requests N --rate R --concurrency C --seconds D
     --max-requests M --singles K --spacing S --api-workers W]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from airflow_stack import AIRFLOW, AirflowStack, start_airflow_stack  # noqa: E402  (test support)
from helpers import PG, pg_rows, shipped_template, write_include  # noqa: E402
from servers import free_port  # noqa: E402

CUSTOMER = "benchco"
INTEGRATION = "billing_webhooks"
FLOW = "invoice_events"
PATH = f"/b2b/webhooks/{CUSTOMER}/{INTEGRATION}/{FLOW}"
ASSET_URI = f"b2b://{CUSTOMER}/{INTEGRATION}/{FLOW}/inbox"
DAG_ID = f"{CUSTOMER}__{INTEGRATION}__{FLOW}"
SECRET = "whsec_" + base64.b64encode(b"bench-billing-signing-key-012345").decode()
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Events queued for the consumer DAG (no run created yet) plus its runs not finished.
PENDING = (
    f"SELECT (SELECT count(*) FROM asset_dag_run_queue WHERE target_dag_id = '{DAG_ID}') + "
    f"(SELECT count(*) FROM dag_run WHERE dag_id = '{DAG_ID}' AND state IN ('queued', 'running'))"
)

# The sender, run in its own process: prints one JSON line with a row per request
# [message id, status (int, or the exception's name), send offset from t0 (s), latency (s), wall clock at
# the answer], the elapsed time, its own CPU seconds and, for the fixed rate, its worst lag behind schedule.
SENDER = textwrap.dedent(
    """
    import asyncio, itertools, json, sys, time
    from datetime import UTC, datetime
    import httpx
    from standardwebhooks.webhooks import Webhook

    cfg = json.loads(sys.argv[1])
    hook = Webhook(cfg["secret"])
    rows = []

    def delivery(i):
        msg_id = f"{cfg['prefix']}{i:07d}"
        body = json.dumps({"invoice_id": msg_id, "status": "paid", "amount_cents": 1000 + i, "currency": "EUR"})
        now = datetime.now(UTC)
        return msg_id, body.encode(), {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": hook.sign(msg_id, now, body),
        }

    async def send(client, i, t0):
        msg_id, body, headers = delivery(i)
        start = time.perf_counter()
        try:
            status = (await client.post(cfg["url"], content=body, headers=headers)).status_code
        except httpx.HTTPError as e:
            status = type(e).__name__
        end = time.perf_counter()
        rows.append([msg_id, status, start - t0, end - start, time.time()])

    async def fixed_rate(client, t0):
        tasks, lag = [], 0.0
        for i in range(cfg["requests"]):
            due = t0 + i / cfg["rate"]
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            lag = max(lag, time.perf_counter() - due)
            tasks.append(asyncio.create_task(send(client, i, t0)))
        await asyncio.gather(*tasks)
        return lag

    async def saturate(client, t0):
        counter, deadline = itertools.count(), t0 + cfg["seconds"]
        async def worker():
            while time.perf_counter() < deadline:
                i = next(counter)
                if i >= cfg["requests"]:
                    return
                await send(client, i, t0)
        await asyncio.gather(*(worker() for _ in range(cfg["concurrency"])))
        return None

    def host_busy():  # CPU seconds (in ticks) the whole host spent busy: not idle, not waiting for I/O
        values = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
        return sum(values) - values[3] - values[4]

    async def main():
        limits = httpx.Limits(max_connections=cfg["concurrency"], max_keepalive_connections=cfg["concurrency"])
        async with httpx.AsyncClient(timeout=60.0, limits=limits, trust_env=False) as client:
            host0, cpu0, t0 = host_busy(), time.process_time(), time.perf_counter()
            lag = await (fixed_rate if cfg["mode"] == "rate" else saturate)(client, t0)
            return {"rows": rows, "elapsed": time.perf_counter() - t0, "lag": lag,
                    "cpu": time.process_time() - cpu0, "host_ticks": host_busy() - host0}

    try:
        import uvloop
    except ImportError:
        uvloop = None
    print(json.dumps(uvloop.run(main()) if uvloop else asyncio.run(main())))
    """
)

# The floor: an ASGI app with no framework and no work, run by uvicorn like the API server is.
FLOOR_APP = textwrap.dedent(
    """
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the whole body, as the receiver does
            message = await receive()
            more = message.get("more_body", False)
        status = 202 if scope["method"] == "POST" else 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":"accepted"}'})
    """
)


# The work floor: the same plain app, plus what a receiver that acknowledges only what it stored must do.
WORK_FLOOR_APP = textwrap.dedent(
    """
    import asyncio, base64, hashlib, hmac, os
    import psycopg

    KEY = base64.b64decode(os.environ["FLOOR_SECRET"].removeprefix("whsec_"))
    DSN = os.environ["FLOOR_DSN"]
    pool = None

    async def connections():
        global pool
        if pool is None:
            pool = asyncio.Queue()
            for _ in range(8):
                pool.put_nowait(await psycopg.AsyncConnection.connect(DSN, autocommit=True))
        return pool

    async def answer(send, status):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":"accepted"}'})

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["method"] != "POST":
            return await answer(send, 200)
        body = b"".join(chunks)
        headers = dict(scope["headers"])
        msg_id = headers.get(b"webhook-id", b"")
        signed = msg_id + b"." + headers.get(b"webhook-timestamp", b"") + b"." + body
        expected = b"v1," + base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest())
        if not any(hmac.compare_digest(expected, s) for s in headers.get(b"webhook-signature", b"").split()):
            return await answer(send, 401)
        queue = await connections()
        conn = await queue.get()
        try:
            await conn.execute(
                "INSERT INTO floor_receipts (message_id, body) VALUES (%s, %s) ON CONFLICT (message_id) DO NOTHING",
                (msg_id.decode(), body.decode()),
            )
        finally:
            queue.put_nowait(conn)
        await answer(send, 202)
    """
)


def cpu_seconds(session: int | None = None, command: str | None = None) -> float:
    """CPU seconds (user + system, with reaped children's) of the processes in ``session`` or named ``command``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text[text.find("(") + 1 : text.rfind(")")], text[text.rfind(")") + 1 :].split()
        # fields[0] is stat's 3rd field (state): [3] the session id, [11:15] utime stime cutime cstime
        if (session is not None and int(fields[3]) == session) or name == command:
            total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


def run_sender(config: dict[str, Any], server_session: int | None = None) -> dict[str, Any]:
    """The sender in its own process; adds the CPU seconds the server and PostgreSQL used meanwhile."""
    before = cpu_seconds(server_session), cpu_seconds(command="postgres")
    proc = subprocess.run(
        [sys.executable, "-c", SENDER, json.dumps({"secret": SECRET, **config})],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the sender failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["server_cpu"] = cpu_seconds(server_session) - before[0]
    result["pg_cpu"] = cpu_seconds(command="postgres") - before[1]
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["rows"]
    latencies = sorted(row[3] * 1000 for row in rows)
    accepted = [row for row in rows if isinstance(row[1], int) and 200 <= row[1] < 300]
    # The span from the first send to the last answer (the fixed rate's own schedule is not counted twice).
    span = max(row[2] + row[3] for row in rows) - min(row[2] for row in rows)
    answered = sorted(row[2] + row[3] for row in rows)
    return {
        "answers_per_s": len(rows) / span,
        "accepted_per_s": len(accepted) / span,
        "accepted_ids": [row[0] for row in accepted],
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max": latencies[-1],
        "statuses": dict(sorted(Counter(str(row[1]) for row in rows).items())),
        "sender_cpu": result["cpu"] / result["elapsed"],
        "server_cpu": result["server_cpu"] / result["elapsed"],
        "pg_cpu": result["pg_cpu"] / result["elapsed"],
        "host_cpu": result["host_ticks"] / CLK_TCK / result["elapsed"],
        "server_cpu_ms": result["server_cpu"] / len(rows) * 1000,
        "lag_ms": (result["lag"] or 0.0) * 1000,
        "count": len(rows),
        "span": span,
        # The longest time the server answered nothing (a pause of the whole process shows here).
        "gap": max((b - a for a, b in zip(answered, answered[1:], strict=False)), default=0.0) * 1000,
    }


def access_log_mark(stack: AirflowStack) -> int:
    path = stack.home / "api-server.log"
    return path.stat().st_size if path.exists() else 0


def access_log_ms(stack: AirflowStack, mark: int) -> list[float]:
    """Server-side durations (ms) of our endpoint's requests, from the API server's access log since ``mark``."""
    with (stack.home / "api-server.log").open("rb") as f:
        f.seek(mark)
        lines = f.read().decode(errors="replace").splitlines()
    found = (
        re.search(r"duration_us=(\d+)", line) for line in lines if "request finished" in line and PATH in line
    )
    return sorted(int(m.group(1)) / 1000 for m in found if m)


def measure_ours(stack: AirflowStack, config: dict[str, Any]) -> dict[str, Any]:
    """One load against our endpoint; adds the server-side p50 / p99 from the access log."""
    mark = access_log_mark(stack)
    result = summary(run_sender({"url": stack.url + PATH, **config}, stack.procs["api-server"].pid))
    inside = access_log_ms(stack, mark)
    result["inside"] = (
        (statistics.median(inside), inside[min(len(inside) - 1, int(len(inside) * 0.99))], len(inside))
        if inside
        else None
    )
    return result


def deploy(tmp: Path, app_db: str, api_workers: int) -> AirflowStack:
    """Airflow (API server + dag-processor) with the customer deployed; waits for the inbox asset."""
    include = write_include(
        tmp / "include",
        {INTEGRATION: shipped_template(INTEGRATION)},
        {
            CUSTOMER: {
                "id": CUSTOMER,
                "name": "Bench Co",
                "integrations": {
                    INTEGRATION: {
                        "connections": {"webhook_secret": "benchco_billing", "app_db": "benchco_db"}
                    }
                },
            }
        },
    )
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_BENCHCO_BILLING": json.dumps({"conn_type": "generic", "password": SECRET}),
            "AIRFLOW_CONN_BENCHCO_DB": f"{PG}/{app_db}",
            "AIRFLOW__API__WORKERS": str(api_workers),
        },
        components=("api-server", "dag-processor"),
    )
    stack.wait_for("the inbox asset", lambda: stack.sql(f"SELECT 1 FROM asset WHERE uri = '{ASSET_URI}'"))
    return stack


def warm_up(url: str, prefix: str, count: int = 40) -> None:
    """Deliveries before measuring, on several connections so every worker gets some (the receiver loads
    its routes and creates its table on first use)."""
    result = run_sender(
        {"url": url, "prefix": prefix, "mode": "saturate", "requests": count, "seconds": 60, "concurrency": 8}
    )
    statuses = {row[1] for row in result["rows"]}
    if statuses != {202}:
        raise SystemExit(f"warm-up against {url} answered {statuses}")


def start_floor(
    tmp: Path, workers: int, source: str = FLOOR_APP, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    module = "floor_app" if source == FLOOR_APP else "work_floor_app"
    (tmp / f"{module}.py").write_text(source, encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"{module}:app", "--app-dir", str(tmp), "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"],
        start_new_session=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_floor(proc)
    raise SystemExit("the floor server did not start")


def stop_floor(proc: subprocess.Popen[bytes]) -> None:
    """End the floor server and its workers (its own session)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def lost_events(stack: AirflowStack, prefix: str, accepted: list[str]) -> dict[str, Any]:
    """Message ids answered 2xx against the receipts and the inbox asset's events stored for them."""
    receipts = [
        m
        for (m,) in stack.sql(
            f"SELECT message_id FROM b2b_webhook_receipts WHERE customer_id = '{CUSTOMER}' "
            f"AND integration = '{INTEGRATION}' AND flow = '{FLOW}' AND message_id LIKE '{prefix}%'"
        )
    ]
    events = [
        m
        for (m,) in stack.sql(
            "SELECT m ->> 'message_id' FROM asset_event e "
            "CROSS JOIN LATERAL jsonb_array_elements(e.extra::jsonb -> 'b2b_webhooks') AS m "
            f"JOIN asset a ON a.id = e.asset_id WHERE a.uri = '{ASSET_URI}' "
            f"AND m ->> 'message_id' LIKE '{prefix}%'"
        )
    ]
    ok = set(accepted)
    unanswered = set(events) - ok  # stored, but the sender got no 2xx (its retry would be a duplicate)
    return {
        "accepted": len(accepted),
        "receipts": len(receipts),
        "events": len(events),
        "lost": len(ok - set(receipts)) + len(ok - set(events)),
        "unanswered": len(unanswered),
        "duplicates": (len(receipts) - len(set(receipts))) + (len(events) - len(set(events))),
        "ok": sorted(accepted) == sorted(receipts) == sorted(events),
    }


def start_scheduler(stack: AirflowStack) -> None:
    """A scheduler like the stack's own components (own session, log in the stack's home, stopped by it)."""
    with (stack.home / "scheduler.log").open("wb") as log:
        stack.procs["scheduler"] = subprocess.Popen(
            [AIRFLOW, "scheduler"],
            env=stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def drain_backlog(stack: AirflowStack, timeout: float) -> dict[str, Any]:
    """Start the scheduler and wait until it has consumed what the loads queued on the inbox."""
    started = time.monotonic()
    start_scheduler(stack)
    runs = f"SELECT count(*) FROM dag_run WHERE dag_id = '{DAG_ID}'"
    try:
        stack.wait_for("the first run", lambda: stack.sql(runs)[0][0] > 0, timeout=timeout)
        stack.wait_for(
            "the backlog to drain", lambda: stack.sql(PENDING)[0][0] == 0, timeout=timeout, every=1
        )
        drained = True
    except TimeoutError:
        drained = False
    states = dict(stack.sql(f"SELECT state, count(*) FROM dag_run WHERE dag_id = '{DAG_ID}' GROUP BY state"))
    return {"seconds": time.monotonic() - started, "drained": drained, "states": states}


def run_queued_latency(stack: AirflowStack, count: int, spacing: float) -> list[dict[str, Any]]:
    """Single deliveries, each ``spacing`` s after the DAG is idle; for each, its 202 -> its run's queued_at.

    Waiting for the DAG to be idle matters: its runs have ``max_active_runs=1`` and Airflow defers creating
    an asset-triggered run while one is queued or running, so a delivery arriving during a run would measure
    that run's duration as well as the scheduler's reaction. Also returned: each run's queued -> finished.
    """
    linked = (
        "SELECT d.id FROM b2b_webhook_receipts r JOIN dagrun_asset_event x ON x.event_id = r.asset_event_id "
        "JOIN dag_run d ON d.id = x.dag_run_id WHERE r.message_id = '{m}'"
    )
    first_after = (
        f"SELECT id FROM dag_run WHERE dag_id = '{DAG_ID}' AND run_type = 'asset_triggered' "
        "AND queued_at >= to_timestamp({t}) ORDER BY queued_at LIMIT 1"
    )
    sent = []
    for k in range(count):
        stack.wait_for("the DAG to be idle", lambda: stack.sql(PENDING)[0][0] == 0, timeout=300)
        time.sleep(spacing)
        result = run_sender(
            {"url": stack.url + PATH, "prefix": f"single{k}-", "mode": "rate", "requests": 1, "rate": 1.0,
             "concurrency": 1}
        )  # fmt: skip
        message_id, status, _, _, acked_at = result["rows"][0]
        if status != 202:
            raise SystemExit(f"a single delivery was answered {status}")
        try:
            run_id = stack.wait_for(
                "the run of a single delivery", lambda m=message_id: stack.sql(linked.format(m=m)), 60, 0.1
            )[0][0]
            how = "consumed by"
        except TimeoutError:  # not linked to a run: the first asset-triggered run queued after the 202
            rows = stack.sql(first_after.format(t=acked_at))
            run_id, how = (rows[0][0] if rows else None), "first run after"
        sent.append((acked_at, run_id, how))
    stack.wait_for("the last run to finish", lambda: stack.sql(PENDING)[0][0] == 0, timeout=300)
    out = []
    for acked_at, run_id, how in sent:
        rows = (
            stack.sql(f"SELECT queued_at, end_date, state FROM dag_run WHERE id = {run_id}") if run_id else []
        )
        queued, ended, state = rows[0] if rows else (None, None, None)
        out.append(
            {
                "how": how,
                "seconds": None if queued is None else queued.timestamp() - acked_at,
                "run_seconds": None if ended is None else (ended - queued).total_seconds(),
                "state": state,
            }
        )
    return out


def print_load(
    title: str, ours: dict[str, Any], floor: dict[str, Any], work: dict[str, Any], saturation: bool
) -> None:
    print(title)
    print(
        f"  {'':<6} {'sent':>6} {'2xx/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'gap ms':>6} "
        f"{'server CPU':>10} {'ms/req':>6} {'PG CPU':>6} {'sender CPU':>10} {'host CPU':>8}  statuses"
    )
    for label, side in (("ours", ours), ("floor", floor), ("work", work)):
        note = "" if saturation else f", sender lag max {side['lag_ms']:.1f} ms"
        if side["sender_cpu"] > 0.85:
            note += " (the sender was the limit: the server can do more)"
        print(
            f"  {label:<6} {side['count']:>6,} {side['accepted_per_s']:>8,.0f} {side['p50']:>7.1f} "
            f"{side['p99']:>7.1f} {side['max']:>7.1f} {side['gap']:>6.0f} {side['server_cpu']:>10.0%} {side['server_cpu_ms']:>6.2f} "
            f"{side['pg_cpu']:>6.0%} {side['sender_cpu']:>10.0%} {side['host_cpu']:>8.0%}  "
            f"{side['statuses']} in {side['span']:.1f} s{note}"
        )
    if ours.get("inside"):
        p50, p99, n = ours["inside"]
        print(
            f"  ours inside the API server (its access log, {n:,} requests): p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )


def run_phases(args: argparse.Namespace, tmp: Path, app_db: str, running: dict[str, Any]) -> dict[str, Any]:
    """Every phase; what it starts goes into ``running`` (stopped by the caller)."""
    print("starting Airflow (api-server, dag-processor) ...", flush=True)
    stack = running["stack"] = deploy(tmp, app_db, args.api_workers)
    floor_proc, floor_url = start_floor(tmp, args.api_workers)
    running["floor"] = floor_proc
    floor_url += PATH
    work_proc, work_url = start_floor(
        tmp, args.api_workers, WORK_FLOOR_APP, {"FLOOR_SECRET": SECRET, "FLOOR_DSN": f"{PG}/{app_db}"}
    )
    running["work floor"] = work_proc
    work_url += PATH
    warm_up(stack.url + PATH, "warm-")
    warm_up(floor_url, "warmfloor-")
    warm_up(work_url, "warmwork-")
    f: dict[str, Any] = {}

    rate = {"mode": "rate", "requests": args.requests, "rate": args.rate, "concurrency": 256}
    print(f"fixed rate: {args.requests:,} at {args.rate:g}/s, ours then the floors ...", flush=True)
    f["rate_ours"] = measure_ours(stack, {"prefix": "rate-", **rate})
    f["rate_floor"] = summary(run_sender({"url": floor_url, "prefix": "rate-", **rate}, floor_proc.pid))
    f["rate_work"] = summary(run_sender({"url": work_url, "prefix": "rate-", **rate}, work_proc.pid))

    saturate = {"mode": "saturate", "requests": args.max_requests, "seconds": args.seconds}
    saturate["concurrency"] = args.concurrency
    print(
        f"saturation: {args.concurrency} in flight for {args.seconds:g} s, ours then the floors ...",
        flush=True,
    )
    f["sat_ours"] = measure_ours(stack, {"prefix": "sat-", **saturate})
    f["sat_floor"] = summary(run_sender({"url": floor_url, "prefix": "sat-", **saturate}, floor_proc.pid))
    f["sat_work"] = summary(run_sender({"url": work_url, "prefix": "sat-", **saturate}, work_proc.pid))
    stop_floor(floor_proc)
    stop_floor(work_proc)
    stored = [m for (m,) in pg_rows(app_db, "SELECT message_id FROM floor_receipts")]
    f["checks"] = {
        "saturation": lost_events(stack, "sat-", f["sat_ours"]["accepted_ids"]),
        "fixed rate": lost_events(stack, "rate-", f["rate_ours"]["accepted_ids"]),
        "work floor": {
            "ok": sorted(m for m in stored if not m.startswith("warmwork-"))
            == sorted(f["rate_work"]["accepted_ids"] + f["sat_work"]["accepted_ids"]),
            "accepted": len(f["rate_work"]["accepted_ids"]) + len(f["sat_work"]["accepted_ids"]),
            "rows": len(stored),
        },
    }

    f["backlog_events"] = stack.sql(
        f"SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = '{ASSET_URI}'"
    )[0][0]
    print(f"starting the scheduler; backlog of {f['backlog_events']:,} events ...", flush=True)
    f["backlog"] = drain_backlog(stack, args.drain_timeout)
    print(f"webhook -> run queued: {args.singles} single deliveries ...", flush=True)
    f["singles"] = run_queued_latency(stack, args.singles, args.spacing)
    f["stored"] = stack.sql(f"SELECT count(*) FROM b2b_webhook_receipts WHERE customer_id = '{CUSTOMER}'")[0][
        0
    ]
    f["loaded"] = pg_rows(app_db, "SELECT count(*) FROM invoice_events")[0][0]
    return f


def problems(f: dict[str, Any]) -> list[str]:
    """What makes this run's figures worthless (empty when nothing)."""
    found = []
    for key in ("rate_ours", "rate_floor", "rate_work", "sat_ours", "sat_floor", "sat_work"):
        bad = {status: n for status, n in f[key]["statuses"].items() if not status.startswith("2")}
        if bad:
            found.append(f"{key}: answers other than 2xx: {bad}")
    for label, c in f["checks"].items():
        if not c["ok"]:
            found.append(f"{label}: the 2xx answers and what was stored differ: {c}")
    if not f["backlog"]["drained"]:
        found.append(f"the backlog did not drain: runs {f['backlog']['states']}")
    states = Counter(str(s["state"]) for s in f["singles"])
    if states != Counter({"success": len(f["singles"])}):
        found.append(f"single deliveries' runs: {dict(states)}")
    if f["loaded"] != f["stored"]:
        found.append(f"{f['stored']:,} deliveries stored but {f['loaded']:,} rows loaded")
    return found


def report(args: argparse.Namespace, load: tuple[float, float, float], f: dict[str, Any]) -> None:
    print(
        f"\nmachine: {os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        f"before the run; API server and floor: {args.api_workers} uvicorn worker(s); sender: httpx async, "
        "its own process"
    )
    title = f"\nfixed rate: {args.requests:,} signed deliveries at {args.rate:g}/s, open loop"
    print_load(title, f["rate_ours"], f["rate_floor"], f["rate_work"], saturation=False)
    p99 = f["rate_ours"]["p99"]
    print(
        f"  ours p99 ack {p99:.1f} ms at {args.rate:g} req/s (target < 50 ms at 100 req/s): "
        f"{'met' if p99 < 50 else 'NOT met'}"
    )
    title = f"\nsaturation: {args.concurrency} in flight, {args.seconds:g} s"
    print_load(title, f["sat_ours"], f["sat_floor"], f["sat_work"], saturation=True)
    share = f["sat_ours"]["accepted_per_s"] / f["sat_floor"]["accepted_per_s"]
    work = f["sat_ours"]["accepted_per_s"] / f["sat_work"]["accepted_per_s"]
    print(
        f"  ours / bare floor throughput: {share:.1%} (target >= 30%): {'met' if share >= 0.3 else 'NOT met'}"
        f"; ours / work floor (signature + one INSERT per request): {work:.1%}"
    )
    for label, c in f["checks"].items():
        if label == "work floor":
            print(
                f"  work floor: 2xx answers {c['accepted']:,}, each stored once (rows {c['rows']:,}, warm-up included)"
            )
            continue
        print(
            f"  {label}: 2xx answers {c['accepted']:,}, receipts {c['receipts']:,}, asset events "
            f"{c['events']:,}; lost {c['lost']}, duplicates {c['duplicates']}, stored without a 2xx "
            f"{c['unanswered']}: no event lost"
        )

    backlog = f["backlog"]
    print(
        f"\nwebhook -> run queued (scheduler started after the loads: it first consumed their backlog of "
        f"{f['backlog_events']:,} events in {backlog['seconds']:.0f} s"
        f"{'' if backlog['drained'] else ' (NOT drained: timed out)'}, runs {backlog['states']})"
    )
    singles = f["singles"]
    times = [s["seconds"] for s in singles if s["seconds"] is not None]
    each = ", ".join("no run" if s["seconds"] is None else f"{s['seconds']:.2f}" for s in singles)
    how = ", ".join(f"{n} {k}" for k, n in Counter(s["how"] for s in singles).items())
    if times:
        print(
            f"  {len(singles)} single deliveries, each {args.spacing:g} s after the DAG was idle: 202 -> run queued "
            f"p50 {statistics.median(times):.2f} s, max {max(times):.2f} s  ({each} s; {how})"
        )
    else:
        print(f"  no run was queued for any of the {len(singles)} deliveries")
    runs = [s["run_seconds"] for s in singles if s["run_seconds"] is not None]
    states = dict(Counter(str(s["state"]) for s in singles))
    if runs:
        print(
            f"  those runs, queued -> finished: p50 {statistics.median(runs):.1f} s, max {max(runs):.1f} s {states}"
        )
    print(f"  end to end: {f['stored']:,} deliveries stored, {f['loaded']:,} rows in the customer's table")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


def main() -> None:
    import psycopg2

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="deliveries at the fixed rate")
    parser.add_argument("--rate", type=float, default=100.0, help="fixed rate, deliveries per second")
    parser.add_argument("--concurrency", type=int, default=16, help="deliveries in flight at saturation")
    parser.add_argument("--seconds", type=float, default=10.0, help="saturation duration")
    parser.add_argument("--max-requests", type=int, default=50_000, help="saturation: stop after this many")
    parser.add_argument("--singles", type=int, default=5, help="single deliveries for webhook -> run queued")
    parser.add_argument(
        "--spacing", type=float, default=3.0, help="seconds from an idle DAG to the next single"
    )
    parser.add_argument("--api-workers", type=int, default=1, help="API server (and floor) uvicorn workers")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="max wait for the backlog's runs")
    args = parser.parse_args()

    app_db = f"b2b_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{app_db}"')
    try:
        with psycopg2.connect(f"{PG}/{app_db}") as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE invoice_events (id VARCHAR(40) PRIMARY KEY, status VARCHAR(20), "
                "amount_cents BIGINT, currency VARCHAR(3))"
            )
            cur.execute(
                "CREATE TABLE floor_receipts (message_id VARCHAR(255) PRIMARY KEY, body TEXT NOT NULL)"
            )
        load = os.getloadavg()
        running: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="b2b-webhook-bench-") as tmp:
            try:
                figures = run_phases(args, Path(tmp), app_db, running)
            finally:  # stopped before their include folder goes
                for floor in ("floor", "work floor"):
                    if floor in running:
                        stop_floor(running[floor])
                if "stack" in running:
                    running["stack"].stop()
        wrong = problems(figures)
        if wrong:
            raise SystemExit("wrong result, no figures:\n  " + "\n  ".join(wrong))
        report(args, load, figures)
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{app_db}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
