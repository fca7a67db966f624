"""Faults injected into a live deployment (see conftest.py): nothing lost, nothing twice, others unaffected.

Each scenario counts what the source sent and what ended up in a target table without a unique key, and
asserts equality by the source's own keys; it prints a figures line (and appends it to $B2B_FAULT_REPORT).
Scenarios leave the deployment running and healthy, whatever order they run in.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_deployment import WEBHOOK_CUSTOMERS, Deployment, signed_body, signed_webhook

pytestmark = pytest.mark.airflow_stack

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


def _send(d: Deployment, customer: str, invoice: str) -> str:
    """One webhook to ``customer``, stored (202); returns the invoice id for :func:`_wait_loaded`."""
    body, headers = signed_webhook(customer, invoice)
    response = httpx.post(d.webhook_url(customer), content=body, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    return invoice


def _wait_loaded(d: Deployment, customer: str, invoice: str) -> None:
    """Wait until ``invoice`` is in ``customer``'s table exactly once."""
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
        self.acked_at: list[float] = []
        self.db_down = threading.Event()
        self.answers_while_down: Counter[str] = Counter()
        self.tried_while_down: dict[str, int] = dict.fromkeys(WEBHOOK_CUSTOMERS, 0)
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
            down_all_along = self.db_down.is_set()  # sent while down; answered while down if still set
            try:
                status: int | str = client.post(
                    self.d.webhook_url(customer), content=body, headers=headers
                ).status_code
            except httpx.TransportError:
                status = "transport"
            with self.lock:
                self.answers[str(status)] += 1
                if down_all_along and self.db_down.is_set():
                    self.answers_while_down[str(status)] += 1
                    self.tried_while_down[customer] += 1
                if status in (200, 202):
                    self.acknowledged[customer].append(invoice)
                    self.acked_at.append(time.monotonic())
                    return
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
    try:
        for thread in threads:
            thread.start()
        stack.wait_for(
            "a first part of the burst acknowledged", lambda: len(sender.acked_at) >= 30, timeout=120
        )
        stopped_at = time.monotonic()
        d.cluster.stop()
        sender.db_down.set()
        stack.wait_for(
            "both customers' webhooks tried while the database is down",
            lambda: all(n >= 15 for n in sender.tried_while_down.values()),
            timeout=60,
        )
        sender.db_down.clear()
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
        # Never a 500, never an answer other than stored (202), already stored (200) or unavailable (503);
        # and while the database is down nothing can be stored, so nothing may be acknowledged.
        assert set(sender.answers) <= {"200", "202", "503", "transport"}, sender.answers
        assert set(sender.answers_while_down) <= {"503", "transport"}, sender.answers_while_down
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
        if not d.cluster.is_up():
            d.cluster.start()

    for customer in WEBHOOK_CUSTOMERS:
        assert sorted(sender.acknowledged[customer]) == sorted(sender.sent[customer]), customer
        ids = {sender.message_ids[i] for i in sender.acknowledged[customer]}
        assert _stored_ids(d, customer, prefix) == Counter(ids), f"{customer}: receipts differ from acks"
        assert _loaded_ids(d, customer, prefix) == Counter(sender.acknowledged[customer]), (
            f"{customer}: loaded rows differ from the acknowledged webhooks (lost or duplicated)"
        )
    failed = {dag: d.dag_states(dag).get("failed", 0) for dag in WEBHOOK_DAGS.values()}
    d.report(
        "postgres_restart_during_webhook_burst",
        sent=sum(map(len, sender.sent.values())),
        acknowledged=sum(map(len, sender.acknowledged.values())),
        stored=sum(sum(_stored_ids(d, c, prefix).values()) for c in WEBHOOK_CUSTOMERS),
        loaded=sum(sum(_loaded_ids(d, c, prefix).values()) for c in WEBHOOK_CUSTOMERS),
        answers=dict(sender.answers),
        answers_while_db_down=dict(sender.answers_while_down),
        faults_injected=1,
        faults_survived=1,
        db_down_seconds=round(started_at - stopped_at, 1),
        first_ack_after_restart_seconds=round(first_ack - started_at, 2),
        all_loaded_after_restart_seconds=round(all_loaded_at - started_at, 1),
        failed_consumer_runs=failed,
    )


def _order_rows(prefix: str, n: int) -> str:
    lines = ["order_id,order_date,sku,quantity"]
    lines += [f"{prefix}{i:06d},2026-02-01,SKU-{i % 97},{i % 9 + 1}" for i in range(n)]
    return "\n".join(lines) + "\n"


def test_sftp_server_killed_mid_download(deployment: Deployment) -> None:
    """The SFTP server dies when half of a ~3 MB file has gone to a run of gamma's import (past the first
    1 MB read block, so a client that took a cut-off download for a whole one would load part of it)."""
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

    d.proxy.on_bytes(len(big) // 2, crash)
    run_1 = f"faults_sftp_{tag}_1"
    d.trigger(FILES_DAG, run_1)
    try:
        state_1 = d.wait_run_finished(FILES_DAG, run_1, timeout=180)
        assert crashed.is_set(), "the server was not crashed during the run"
        # Another customer is not affected by gamma's server being down.
        other = _send(d, "alpha", f"SFTPDOWN-{tag}")
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
    _wait_loaded(d, "alpha", other)
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
    d.report(
        "sftp_server_killed_mid_download",
        files_sent=2,
        rows_sent=sum(expected.values()),
        rows_loaded=sum(loaded.values()),
        bytes_before_crash=len(big) // 2,
        runs={run_1: state_1, run_2: "success"},
        faults_injected=1,
        faults_survived=1,
        recovery_seconds=round(recovered_at - restarted_at, 1),
    )


def _stale_dags(d: Deployment) -> set[str]:
    names = ", ".join(f"'{i}'" for i in ALL_DAGS)
    return {i for (i,) in d.stack.sql(f"SELECT dag_id FROM dag WHERE is_stale AND dag_id IN ({names})")}


class _StaleWatch:
    """Samples ``dag.is_stale`` of the suite's DAGs every 0.3 s in a thread, remembering any stale one."""

    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.seen: set[str] = set()
        self.samples = 0
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while self._running.is_set():
            try:
                self.seen.update(_stale_dags(self.d))
                self.samples += 1
            except Exception:  # noqa: BLE001, S112 - a sample lost to a busy database is taken again
                continue
            finally:
                time.sleep(0.3)

    def __enter__(self) -> _StaleWatch:
        self._running.set()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.clear()
        self._thread.join(timeout=30)


def test_dag_processor_killed_and_restarted(deployment: Deployment) -> None:
    """SIGKILL the dag-processor: DAGs stay active, runs go on without it and after its restart."""
    d, stack = deployment, deployment.stack
    tag = uuid.uuid4().hex[:6]
    assert _stale_dags(d) == set()
    with _StaleWatch(d) as watch:
        try:
            stack.kill("dag-processor")
            killed_at = time.monotonic()
            # Without a dag-processor: an event-driven run and a triggered run still happen.
            invoice = _send(d, "beta", f"NOPROC-{tag}")
            run_down = f"faults_noproc_{tag}"
            d.trigger(FILES_DAG, run_down)
            _wait_loaded(d, "beta", invoice)
            assert d.wait_run_finished(FILES_DAG, run_down) == "success"
        finally:
            restart_ts = stack.sql("SELECT now()")[0][0]
            stack.start_component("dag-processor")
        restarted_at = time.monotonic()
        stack.wait_for(
            "every DAG parsed again by the new dag-processor",
            lambda: _parsed_since(d, restart_ts) == len(ALL_DAGS),
            timeout=120,
        )
        parsed_at = time.monotonic()
        invoice = _send(d, "alpha", f"NEWPROC-{tag}")
        run_up = f"faults_newproc_{tag}"
        d.trigger(FILES_DAG, run_up)
        _wait_loaded(d, "alpha", invoice)
        assert d.wait_run_finished(FILES_DAG, run_up) == "success"
    assert watch.seen == set(), f"DAGs marked stale around the dag-processor restart: {watch.seen}"
    assert _stale_dags(d) == set()
    d.report(
        "dag_processor_sigkill",
        messages_sent=2,
        loaded=2,
        triggered_runs_succeeded=2,
        stale_samples=watch.samples,
        dags_seen_stale=len(watch.seen),
        faults_injected=1,
        faults_survived=1,
        down_seconds=round(restarted_at - killed_at, 1),
        reparsed_after_restart_seconds=round(parsed_at - restarted_at, 1),
    )


def _parsed_since(d: Deployment, since: Any) -> int:
    names = ", ".join(f"'{i}'" for i in ALL_DAGS)
    return d.stack.sql(
        f"SELECT count(*) FROM dag WHERE dag_id IN ({names}) AND last_parsed_time > '{since.isoformat()}'"
    )[0][0]


def _sensor_waiting_in_triggerer(d: Deployment, run_id: str) -> bool:
    return bool(
        d.stack.sql(
            "SELECT 1 FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            f"WHERE ti.dag_id = '{SENSOR_DAG}' AND ti.run_id = '{run_id}' AND ti.task_id = 'wait_for_files' "
            "AND ti.state = 'deferred' AND t.triggerer_id IS NOT NULL"
        )
    )


def _sensor_retries(d: Deployment, run_ids: Any) -> dict[str, tuple[int, set[int]]]:
    """Runs whose sensor was retried: its last try number, and which earlier tries the scheduler ended by
    "state mismatch" (see dags/fault_sensor_dag.py)."""
    retried: dict[str, tuple[int, set[int]]] = {}
    for run_id in run_ids:
        where = f"dag_id = '{SENSOR_DAG}' AND run_id = '{run_id}' AND task_id = 'wait_for_files'"
        ((tries,),) = d.stack.sql(f"SELECT try_number FROM task_instance WHERE {where}")
        if tries > 1:
            mismatched = d.stack.sql(f"SELECT try_number FROM log WHERE {where} AND event = 'state mismatch'")
            retried[run_id] = (tries, {t for (t,) in mismatched})
    return retried


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
            assert runs[run_id] == "success", f"{runs}\n{d.run_failure_report(SENSOR_DAG, run_id)}"
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
        _wait_loaded(d, "alpha", _send(d, "alpha", f"NOTRIG-{tag}"))
    finally:
        stack.start_component("triggerer")
    restarted_at = time.monotonic()
    runs[first] = d.wait_run_finished(SENSOR_DAG, first, timeout=180)
    resumed_at = time.monotonic()
    assert runs[first] == "success", d.run_failure_report(SENSOR_DAG, first)
    drop("after")
    run_until_folder_empty()
    loaded = Counter(
        e
        for (e,) in d.app_rows(
            "sensorco", f"SELECT event_id FROM sensor_events WHERE event_id LIKE '{tag}-%'"
        )
    )
    assert loaded == Counter(sent), "events lost or loaded twice"
    # The sensor's retries (fault_sensor_dag.py) are for Airflow's resume-after-defer race only: every
    # earlier try of a retried sensor was ended by the scheduler's "state mismatch", never by the sensor.
    retried = _sensor_retries(d, runs)
    unexplained = {r: t for r, t in retried.items() if not set(range(1, t[0])) <= t[1]}
    assert not unexplained, f"sensor tries ended otherwise than by Airflow's state mismatch: {unexplained}"
    d.report(
        "triggerer_sigkill",
        files_sent=4,
        rows_sent=len(sent),
        rows_loaded=sum(loaded.values()),
        runs=len(runs),
        sensor_retries_after_state_mismatch=sum(tries - 1 for tries, _ in retried.values()),
        faults_injected=1,
        faults_survived=1,
        down_seconds=round(restarted_at - killed_at, 1),
        waiting_run_finished_after_restart_seconds=round(resumed_at - restarted_at, 1),
    )


PROBLEMS_FILE = "b2b_config_problems.py"
FACTORY_FILE = "b2b_integrations_dags.py"
# A newcomer whose file never was valid (a typo in a key, line 3) and beta's file broken by an edit (YAML).
NEWCOMER_BROKEN = (
    "id: zeta\nname: Zeta\nintegrashuns: {}\nintegrations:\n  fault_webhooks:\n"
    "    connections: {webhook_secret: zeta_secret, app_db: zeta_db}\n"
)
BETA_BROKEN = (
    "id: beta\nname: Beta\nintegrations:\n  fault_webhooks: {connections: {webhook_secret: beta_secret\n"
)


def _import_errors(d: Deployment) -> dict[str, str]:
    return {Path(f).name: trace for f, trace in d.stack.sql("SELECT filename, stacktrace FROM import_error")}


def test_a_broken_customer_file_dropped_into_the_running_deployment(deployment: Deployment) -> None:
    """A new customer's broken file and a broken edit of beta's file: every DAG stays active and runs (beta
    on its last valid version), and the problems show as an import error naming file, line and key path."""
    d, stack = deployment, deployment.stack
    tag = uuid.uuid4().hex[:6]
    customers = d.include / "customers"
    beta_file = customers / "beta.yaml"
    beta_valid = beta_file.read_text()
    assert _stale_dags(d) == set()
    with _StaleWatch(d) as watch:
        try:
            dropped_at = time.monotonic()
            (customers / "zeta.yaml").write_text(NEWCOMER_BROKEN)
            beta_file.write_text(BETA_BROKEN)
            errors = stack.wait_for(
                "the config problems as an import error",
                lambda: (
                    (e := _import_errors(d))
                    and any("zeta.yaml" in t and "beta.yaml" in t for t in e.values())
                    and e
                ),
                timeout=120,
            )
            visible_at = time.monotonic()
            # On the DAG-less problems file: an import error on the factory file would make every DAG stale.
            assert set(errors) == {PROBLEMS_FILE}, f"import errors on {sorted(errors)}"
            problems = errors[PROBLEMS_FILE]
            zeta_line = next((ln for ln in problems.splitlines() if "customers/zeta.yaml:3" in ln), "")
            assert "integrashuns: unknown key" in zeta_line, problems
            assert any(
                "customers/beta.yaml:" in ln and "invalid YAML" in ln for ln in problems.splitlines()
            ), problems
            # Runs go on meanwhile: beta on its last valid version, the others as before.
            since = stack.sql("SELECT now()")[0][0]
            stack.wait_for("a parse with the broken files", lambda: _parsed_since(d, since) == len(ALL_DAGS))
            reparsed_at = time.monotonic()
            sent = {c: _send(d, c, f"BROKEN-{c}-{tag}") for c in WEBHOOK_CUSTOMERS}
            run_id = f"faults_broken_{tag}"
            d.trigger(FILES_DAG, run_id)
            for customer, invoice in sent.items():
                _wait_loaded(d, customer, invoice)
            assert d.wait_run_finished(FILES_DAG, run_id) == "success"
            schedulable = stack.sql(
                "SELECT count(*) FROM dag WHERE NOT is_paused AND NOT is_stale AND NOT has_import_errors "
                "AND dag_id IN (" + ", ".join(f"'{i}'" for i in ALL_DAGS) + ")"
            )[0][0]
            ran_at = time.monotonic()
        finally:
            (customers / "zeta.yaml").unlink(missing_ok=True)
            beta_file.write_text(beta_valid)
        fixed_at = time.monotonic()
        stack.wait_for(
            "the problems to clear once the files are fixed",
            lambda: PROBLEMS_FILE not in _import_errors(d),
            timeout=120,
        )
    cleared_at = time.monotonic()
    assert watch.seen == set(), f"DAGs marked stale while a customer file was broken: {watch.seen}"
    assert schedulable == len(ALL_DAGS)
    d.report(
        "broken_customer_file",
        broken_files=2,
        messages_sent=2,
        loaded=2,
        triggered_runs_succeeded=1,
        dags_active=schedulable,
        dags_seen_stale=len(watch.seen),
        stale_samples=watch.samples,
        faults_injected=2,
        faults_survived=2,
        problem_visible_after_seconds=round(visible_at - dropped_at, 1),
        reparsed_after_seconds=round(reparsed_at - dropped_at, 1),
        runs_done_after_seconds=round(ran_at - dropped_at, 1),
        problem_cleared_after_fix_seconds=round(cleared_at - fixed_at, 1),
    )


POISON = {
    "nan": b'{"invoice_id": "POISON-nan", "amount_cents": NaN}',
    "huge_integer": b'{"invoice_id": "POISON-int", "amount_cents": ' + b"9" * 5000 + b"}",
    "deep_nesting": b'{"invoice_id": "POISON-deep", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "missing_key": b'{"status": "paid", "amount_cents": 1, "currency": "EUR"}',
}


def test_poison_webhooks_are_refused_and_later_ones_still_load(deployment: Deployment) -> None:
    """Poison bodies, correctly signed, between valid webhooks: each gets a 4xx with a reason and is not
    stored; the valid ones before and after are loaded once; no consumer run fails."""
    d, stack = deployment, deployment.stack
    tag = uuid.uuid4().hex[:6]
    failed_before = {dag: d.dag_states(dag).get("failed", 0) for dag in WEBHOOK_DAGS.values()}
    valid: dict[str, list[str]] = {c: [] for c in WEBHOOK_CUSTOMERS}
    answers: dict[str, tuple[int, dict[str, Any]]] = {}
    poison_ids: list[str] = []
    with httpx.Client(timeout=60) as client:

        def send_valid(customer: str, n: int) -> None:
            for _ in range(n):
                invoice = f"POISONRUN-{tag}-{customer}-{len(valid[customer]):03d}"
                body, headers = signed_webhook(customer, invoice)
                assert client.post(d.webhook_url(customer), content=body, headers=headers).status_code == 202
                valid[customer].append(invoice)

        for customer in WEBHOOK_CUSTOMERS:
            send_valid(customer, 3)
        for case, body in POISON.items():
            message_id = f"{tag}-poison-{case}"
            poison_ids.append(message_id)
            headers = signed_body("alpha", body, message_id)
            response = client.post(d.webhook_url("alpha"), content=body, headers=headers)
            try:
                answers[case] = (response.status_code, response.json())
            except ValueError:
                answers[case] = (response.status_code, {"not_json": response.text[:200]})
            send_valid("alpha", 1)
        send_valid("beta", 3)
    for case, (status, body) in answers.items():
        assert 400 <= status < 500, (case, status, body)
        assert body.get("reason") or body.get("detail"), (case, body)
        assert len(json.dumps(body)) < 2000, (case, "the answer echoes the body")
    for customer in WEBHOOK_CUSTOMERS:
        stack.wait_for(
            f"{customer}'s valid webhooks loaded",
            lambda c=customer: sum(_loaded_ids(d, c, f"POISONRUN-{tag}").values()) >= len(valid[c]),
            timeout=180,
        )
    stack.wait_for("the consumer runs to settle", lambda: _settled(d, WEBHOOK_DAGS.values()), timeout=180)
    for customer in WEBHOOK_CUSTOMERS:
        assert _loaded_ids(d, customer, f"POISONRUN-{tag}") == Counter(valid[customer]), customer
    assert _stored_ids(d, "alpha", f"{tag}-poison-") == Counter(), "a poison message was stored"
    assert _loaded_ids(d, "alpha", "POISON-") == Counter()
    failed_after = {dag: d.dag_states(dag).get("failed", 0) for dag in WEBHOOK_DAGS.values()}
    assert failed_after == failed_before
    d.report(
        "poison_webhooks",
        poison_sent=len(POISON),
        poison_answers={case: status for case, (status, _) in answers.items()},
        valid_sent=sum(map(len, valid.values())),
        valid_acknowledged=sum(map(len, valid.values())),
        valid_loaded=sum(sum(_loaded_ids(d, c, f"POISONRUN-{tag}").values()) for c in WEBHOOK_CUSTOMERS),
        poison_stored=0,
        failed_consumer_runs=sum(failed_after.values()) - sum(failed_before.values()),
    )
