"""Faults injected into a live deployment (see conftest.py): nothing lost, nothing twice, others unaffected.

Each scenario counts what the source sent and what ended up in a target table without a unique key, and
asserts equality by the source's own keys; it prints a figures line (and appends it to $B2B_FAULT_REPORT).
Scenarios leave the deployment running and healthy, whatever order they run in.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from itertools import count
from typing import Any

import httpx
import pytest
from fault_deployment import WEBHOOK_CUSTOMERS, Deployment, report, signed_webhook

pytestmark = pytest.mark.e2e

WEBHOOK_DAGS = {c: f"{c}__fault_webhooks__invoice_events" for c in WEBHOOK_CUSTOMERS}
FILES_DAG = "gamma__fault_files__orders"
SENSOR_DAG = "sensorco__fault_sensor__files"
ALL_DAGS = {*WEBHOOK_DAGS.values(), FILES_DAG, SENSOR_DAG}


def _loaded_ids(d: Deployment, customer: str, prefix: str) -> Counter[str]:
    return Counter(
        i for (i,) in d.app_rows(customer, f"SELECT id FROM invoice_events WHERE id LIKE '{prefix}%'")
    )


def _stored_ids(d: Deployment, customer: str, message_prefix: str) -> Counter[str]:
    return Counter(
        m
        for (m,) in d.stack.sql(
            "SELECT message_id FROM b2b_webhook_receipts WHERE customer_id = "
            f"'{customer}' AND message_id LIKE '{message_prefix}%'"
        )
    )


def _settled(d: Deployment, dag_ids: Any) -> bool:
    """No run of these DAGs is queued or running and no task waits for a retry."""
    ids = ", ".join(f"'{i}'" for i in dag_ids)
    return not d.stack.sql(
        f"SELECT 1 FROM dag_run WHERE dag_id IN ({ids}) AND state IN ('queued', 'running') "
        f"UNION ALL SELECT 1 FROM task_instance WHERE dag_id IN ({ids}) AND state = 'up_for_retry'"
    )


def _deliver_once(d: Deployment, customer: str, invoice: str) -> None:
    """One webhook to ``customer`` (with a sender's retries); wait until its row is loaded, once."""
    body, headers = signed_webhook(customer, invoice)
    response = httpx.post(d.webhook_url(customer), content=body, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    d.stack.wait_for(
        f"{customer}'s invoice {invoice} to be loaded",
        lambda: _loaded_ids(d, customer, invoice) == Counter({invoice: 1}),
        timeout=120,
    )


class _Sender:
    """Senders of signed webhooks that retry 503s and connection errors with backoff, as a webhook sender
    does (capped at 2 s instead of the answer's Retry-After of 30 s, to keep the suite short)."""

    def __init__(self, d: Deployment, prefix: str) -> None:
        self.d = d
        self.prefix = prefix
        self.lock = threading.Lock()
        self.sent: dict[str, list[str]] = {c: [] for c in WEBHOOK_CUSTOMERS}  # invoice ids per customer
        self.acknowledged: dict[str, list[str]] = {c: [] for c in WEBHOOK_CUSTOMERS}
        self.message_ids: dict[str, str] = {}
        self.answers: Counter[str] = Counter()  # every HTTP status (or "transport") seen, all attempts
        self.unavailable: dict[str, int] = dict.fromkeys(WEBHOOK_CUSTOMERS, 0)
        self.acked_at: list[float] = []
        self.stop = threading.Event()
        self._numbers = count()

    def _send(self, client: httpx.Client, customer: str) -> None:
        invoice = f"{self.prefix}{customer}-{next(self._numbers):05d}"
        message_id = f"{self.prefix}{uuid.uuid4().hex}"
        with self.lock:
            self.sent[customer].append(invoice)
            self.message_ids[invoice] = message_id
        delay, deadline = 0.1, time.monotonic() + 180
        while time.monotonic() < deadline:
            body, headers = signed_webhook(customer, invoice, message_id)  # re-signed per attempt, same id
            try:
                status: int | str = client.post(
                    self.d.webhook_url(customer), content=body, headers=headers
                ).status_code
            except httpx.TransportError:
                status = "transport"
            with self.lock:
                self.answers[str(status)] += 1
                if status in (200, 202):
                    self.acknowledged[customer].append(invoice)
                    self.acked_at.append(time.monotonic())
                    return
                if status == 503:
                    self.unavailable[customer] += 1
            if status not in (503, "transport"):
                return  # a wrong answer: counted, and the scenario's assertions fail on it
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def worker(self, customer: str) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                self._send(client, customer)


def test_postgres_restart_during_a_webhook_burst(deployment: Deployment) -> None:
    """PostgreSQL (metadata DB and app DBs) stopped and started while two customers' webhooks stream in."""
    d, stack = deployment, deployment.stack
    prefix = f"PG-{uuid.uuid4().hex[:6]}-"
    sender = _Sender(d, prefix)
    threads = [
        threading.Thread(target=sender.worker, args=(c,), daemon=True)
        for c in WEBHOOK_CUSTOMERS
        for _ in range(3)
    ]
    stack.restart_policy = "always"  # as docker-compose.yaml's restart: always
    try:
        for thread in threads:
            thread.start()
        stack.wait_for(
            "a first part of the burst acknowledged", lambda: len(sender.acked_at) >= 30, timeout=120
        )
        stopped_at = time.monotonic()
        d.cluster.stop()
        stack.wait_for(
            "both customers' webhooks answered 503 while the database is down",
            lambda: all(n >= 15 for n in sender.unavailable.values()),
            timeout=60,
        )
        acked_while_down = len(sender.acked_at)
        d.cluster.start()
        started_at = time.monotonic()
        first_ack = stack.wait_for(
            "a webhook acknowledged after the restart",
            lambda: next((t for t in sender.acked_at if t > started_at), None),
            timeout=120,
        )
        stack.wait_for(
            "more of the burst acknowledged after the restart",
            lambda: sum(1 for t in sender.acked_at if t > started_at) >= 30,
            timeout=120,
        )
        sender.stop.set()
        for thread in threads:
            thread.join(timeout=200)
        assert not any(t.is_alive() for t in threads)
        for customer in WEBHOOK_CUSTOMERS:
            stack.wait_for(
                f"every acknowledged webhook of {customer} loaded",
                lambda c=customer: sum(_loaded_ids(d, c, prefix).values()) >= len(sender.acknowledged[c]),
                timeout=240,
            )
        stack.wait_for("the consumer runs to settle", lambda: _settled(d, WEBHOOK_DAGS.values()), timeout=240)
        all_loaded_at = time.monotonic()
    finally:
        sender.stop.set()
        stack.restart_policy = "never"
        if not d.cluster.is_up():
            d.cluster.start()

    # Never a 500, never an answer other than stored (202), already stored (200) or unavailable (503).
    assert set(sender.answers) <= {"200", "202", "503", "transport"}, sender.answers
    assert acked_while_down <= len([t for t in sender.acked_at if t < started_at])
    for customer in WEBHOOK_CUSTOMERS:
        assert sorted(sender.acknowledged[customer]) == sorted(sender.sent[customer]), customer
        ids = {sender.message_ids[i] for i in sender.acknowledged[customer]}
        assert _stored_ids(d, customer, prefix) == Counter(ids), f"{customer}: receipts differ from acks"
        assert _loaded_ids(d, customer, prefix) == Counter(sender.acknowledged[customer]), (
            f"{customer}: loaded rows differ from the acknowledged webhooks (lost or duplicated)"
        )
    failed = {dag: d.dag_states(dag).get("failed", 0) for dag in WEBHOOK_DAGS.values()}
    report(
        "postgres_restart_during_webhook_burst",
        sent=sum(map(len, sender.sent.values())),
        acknowledged=sum(map(len, sender.acknowledged.values())),
        stored=sum(sum(_stored_ids(d, c, prefix).values()) for c in WEBHOOK_CUSTOMERS),
        loaded=sum(sum(_loaded_ids(d, c, prefix).values()) for c in WEBHOOK_CUSTOMERS),
        answers=dict(sender.answers),
        faults_injected=1,
        faults_survived=1,
        db_down_seconds=round(started_at - stopped_at, 1),
        first_ack_after_restart_seconds=round(first_ack - started_at, 2),
        all_loaded_after_restart_seconds=round(all_loaded_at - started_at, 1),
        components_restarted=dict(stack.restarts),
        failed_consumer_runs=failed,
    )
    stack.restarts.clear()


def _order_rows(prefix: str, n: int) -> str:
    lines = ["order_id,order_date,sku,quantity"]
    lines += [f"{prefix}{i:06d},2026-02-01,SKU-{i % 97},{i % 9 + 1}" for i in range(n)]
    return "\n".join(lines) + "\n"


def test_sftp_server_killed_mid_download(deployment: Deployment) -> None:
    """The SFTP server dies while a ~3 MB file is half downloaded by a run of gamma's import."""
    d = deployment
    tag = uuid.uuid4().hex[:6]
    big_name, small_name = f"b-big-{tag}.csv", f"a-small-{tag}.csv"
    big = _order_rows(f"B{tag}-", 80_000)
    small = _order_rows(f"S{tag}-", 3)
    (d.files_folder / small_name).write_text(small)
    (d.files_folder / big_name).write_text(big)
    crashed = threading.Event()

    def crash() -> None:
        d.sshd.crash()
        crashed.set()

    d.proxy.on_bytes(len(big) // 3, crash)
    run_1 = f"faults_sftp_{tag}_1"
    d.trigger(FILES_DAG, run_1)
    try:
        state_1 = d.wait_run_finished(FILES_DAG, run_1, timeout=180)
        assert crashed.is_set(), "the server was not crashed during the run"
        # Another customer is not affected by gamma's server being down.
        _deliver_once(d, "alpha", f"SFTPDOWN-{tag}")
        assert state_1 == "failed"
        assert (d.files_folder / big_name).exists() and not (d.files_folder / "processed" / big_name).exists()
        ledger = d.app_rows(
            "gamma",
            f"SELECT status FROM b2b_file_ledger WHERE customer_id = 'gamma' AND file_name = '{big_name}'",
        )
        assert ledger == [], f"the ledger advanced for the interrupted file: {ledger}"
        assert d.app_rows(
            "gamma", f"SELECT count(*) FROM partner_orders WHERE source_file = '{big_name}'"
        ) == [(0,)]
    finally:
        if not crashed.is_set():
            d.proxy._triggers.clear()  # noqa: SLF001 - a crash that did not happen must not hit a later run
        if d.sshd.proc.poll() is not None:
            d.sshd.restart()
    restarted_at = time.monotonic()
    run_2 = f"faults_sftp_{tag}_2"
    d.trigger(FILES_DAG, run_2)
    assert d.wait_run_finished(FILES_DAG, run_2, timeout=180) == "success"
    recovered_at = time.monotonic()
    expected = Counter(line.split(",")[0] for text in (big, small) for line in text.splitlines()[1:])
    loaded = Counter(
        o
        for (o,) in d.app_rows(
            "gamma",
            f"SELECT order_id FROM partner_orders WHERE source_file IN ('{big_name}', '{small_name}')",
        )
    )
    assert loaded == expected, "rows lost or loaded twice"
    assert sorted(
        d.app_rows(
            "gamma",
            "SELECT file_name, status FROM b2b_file_ledger WHERE customer_id = 'gamma' "
            f"AND file_name IN ('{big_name}', '{small_name}')",
        )
    ) == [(small_name, "loaded"), (big_name, "loaded")]
    assert {p.name for p in (d.files_folder / "processed").iterdir()} >= {big_name, small_name}
    assert not (d.files_folder / big_name).exists()
    report(
        "sftp_server_killed_mid_download",
        files_sent=2,
        rows_sent=sum(expected.values()),
        rows_loaded=sum(loaded.values()),
        bytes_before_crash=len(big) // 3,
        runs={run_1: state_1, run_2: "success"},
        faults_injected=1,
        faults_survived=1,
        recovery_seconds=round(recovered_at - restarted_at, 1),
    )


def _stale_dags(d: Deployment) -> set[str]:
    names = ", ".join(f"'{i}'" for i in ALL_DAGS)
    return {i for (i,) in d.stack.sql(f"SELECT dag_id FROM dag WHERE is_stale AND dag_id IN ({names})")}


def test_dag_processor_killed_and_restarted(deployment: Deployment) -> None:
    """SIGKILL the dag-processor: DAGs stay active, runs go on without it and after its restart."""
    d, stack = deployment, deployment.stack
    tag = uuid.uuid4().hex[:6]
    assert _stale_dags(d) == set()
    seen_stale: set[str] = set()
    samples = count()
    watching = threading.Event()
    watching.set()

    def watch() -> None:
        while watching.is_set():
            try:
                seen_stale.update(_stale_dags(d))
                next(samples)
            except Exception:  # noqa: BLE001, S112 - a sample lost to a busy database is retried
                continue
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stack.kill("dag-processor")
        killed_at = time.monotonic()
        # Without a dag-processor: an event-driven run and a triggered run still happen.
        _deliver_once(d, "beta", f"NOPROC-{tag}")
        run_down = f"faults_noproc_{tag}"
        d.trigger(FILES_DAG, run_down)
        assert d.wait_run_finished(FILES_DAG, run_down) == "success"
        stack.start_component("dag-processor")
        restarted_at = time.monotonic()
        restart_ts = stack.sql("SELECT now()")[0][0]
        stack.wait_for(
            "every DAG parsed again by the new dag-processor",
            lambda: (
                stack.sql(
                    "SELECT count(*) FROM dag WHERE dag_id IN ("
                    + ", ".join(f"'{i}'" for i in ALL_DAGS)
                    + f") AND last_parsed_time > '{restart_ts.isoformat()}'"
                )[0][0]
                == len(ALL_DAGS)
            ),
            timeout=120,
        )
        parsed_at = time.monotonic()
        _deliver_once(d, "alpha", f"NEWPROC-{tag}")
        run_up = f"faults_newproc_{tag}"
        d.trigger(FILES_DAG, run_up)
        assert d.wait_run_finished(FILES_DAG, run_up) == "success"
    finally:
        watching.clear()
        watcher.join(timeout=30)
        if "dag-processor" not in stack.procs:
            stack.start_component("dag-processor")
    assert seen_stale == set(), f"DAGs marked stale around the dag-processor restart: {seen_stale}"
    assert _stale_dags(d) == set()
    report(
        "dag_processor_sigkill",
        messages_sent=2,
        loaded=2,
        triggered_runs_succeeded=2,
        stale_samples=next(samples),
        dags_seen_stale=len(seen_stale),
        faults_injected=1,
        faults_survived=1,
        down_seconds=round(restarted_at - killed_at, 1),
        reparsed_after_restart_seconds=round(parsed_at - restarted_at, 1),
    )


def _sensor_waiting_in_triggerer(d: Deployment, run_id: str) -> bool:
    return bool(
        d.stack.sql(
            "SELECT 1 FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            f"WHERE ti.dag_id = '{SENSOR_DAG}' AND ti.run_id = '{run_id}' AND ti.task_id = 'wait_for_files' "
            "AND ti.state = 'deferred' AND t.triggerer_id IS NOT NULL"
        )
    )


def test_triggerer_killed_while_a_flow_waits(deployment: Deployment) -> None:
    """SIGKILL the triggerer while sensorco's deferred sensor waits for files; files dropped just before,
    during and after the outage are each loaded once."""
    d, stack = deployment, deployment.stack
    tag = uuid.uuid4().hex[:6]
    sent: list[str] = []

    def drop(name: str, rows: int = 50) -> None:
        ids = [f"{tag}-{name}-{i:03d}" for i in range(rows)]
        (d.sensor_folder / f"{tag}-{name}.csv").write_text("event_id\n" + "\n".join(ids) + "\n")
        sent.extend(ids)

    def pending() -> list[str]:
        return sorted(p.name for p in d.sensor_folder.glob(f"{tag}-*.csv"))

    runs: dict[str, str] = {}

    def run_until_folder_empty() -> None:
        # A run takes the files ready when its sensor fires; files that came later need another run.
        while pending():
            run_id = f"faults_sensor_{tag}_{len(runs) + 1}"
            d.trigger(SENSOR_DAG, run_id)
            runs[run_id] = d.wait_run_finished(SENSOR_DAG, run_id, timeout=180)
            assert runs[run_id] == "success", runs
            assert len(runs) <= 6, f"files left behind after {runs}: {pending()}"

    first = f"faults_sensor_{tag}_0"
    d.trigger(SENSOR_DAG, first)
    stack.wait_for("the sensor deferred to the triggerer", lambda: _sensor_waiting_in_triggerer(d, first))
    drop("before")  # just before the kill: the trigger may or may not have seen it
    stack.kill("triggerer")
    killed_at = time.monotonic()
    try:
        drop("during-1")
        drop("during-2")
        # A webhook customer does not need the triggerer.
        _deliver_once(d, "alpha", f"NOTRIG-{tag}")
    finally:
        stack.start_component("triggerer")
    restarted_at = time.monotonic()
    runs[first] = d.wait_run_finished(SENSOR_DAG, first, timeout=180)
    resumed_at = time.monotonic()
    assert runs[first] == "success"
    drop("after")
    run_until_folder_empty()
    loaded = Counter(
        e
        for (e,) in d.app_rows(
            "sensorco", f"SELECT event_id FROM sensor_events WHERE event_id LIKE '{tag}-%'"
        )
    )
    assert loaded == Counter(sent), "events lost or loaded twice"
    report(
        "triggerer_sigkill",
        files_sent=4,
        rows_sent=len(sent),
        rows_loaded=sum(loaded.values()),
        runs=len(runs),
        faults_injected=1,
        faults_survived=1,
        down_seconds=round(restarted_at - killed_at, 1),
        waiting_run_finished_after_restart_seconds=round(resumed_at - restarted_at, 1),
    )
