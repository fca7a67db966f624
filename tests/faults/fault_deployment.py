"""The fault suite's live deployment (started once per session by conftest.py) and its helpers.

Airflow runs as in the demo (API server, scheduler with LocalExecutor, dag-processor, triggerer) with its
metadata DB AND the customers' app databases on a private PostgreSQL cluster (tests/pg_cluster.py), so a
scenario may stop or kill that server without touching the machine's PostgreSQL, which the rest of the test
session uses. Customers:

* ``alpha`` and ``beta``: signed webhooks (Standard Webhooks) into ``invoice_events``, each in its own app DB;
* ``gamma``: a manually triggered SFTP file import into ``partner_orders``, through a throttling proxy
  (tests/throttle_proxy.py) so that a download lasts long enough to be cut in the middle;
* ``sensorco``: a hand-written DAG (dags/fault_sensor_dag.py) whose deferrable sensor waits in the triggerer.

Every target table has NO unique key: a row stored twice stays visible as two rows.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from airflow_stack import AirflowStack, start_airflow_stack
from helpers import REPO, write_include
from pg_cluster import PgCluster, start_pg_cluster
from sshd import SshServer, start_sshd
from throttle_proxy import ThrottleProxy

HERE = Path(__file__).resolve().parent
WEBHOOK_CUSTOMERS = ("alpha", "beta")
SECRETS = {
    c: "whsec_" + base64.b64encode(f"fault-suite-{c}-signing-key-0123".encode()).decode()
    for c in WEBHOOK_CUSTOMERS
}
INVOICE_COLUMNS = {
    "id": "VARCHAR(40)",
    "status": "VARCHAR(20)",
    "amount_cents": "BIGINT",
    "currency": "VARCHAR(3)",
}
ORDER_FIELDS = ["order_id", "order_date", "sku", "quantity"]

WEBHOOK_TEMPLATE: dict[str, Any] = {
    "name": "fault_webhooks",
    "description": "Invoice webhooks, loaded by plain INSERT (no key) so duplicates show.",
    # Retries close together: a consumer run that meets the database down must outlive a short outage.
    "defaults": {"retries": 10, "retry_delay_seconds": 1, "retry_exponential_backoff": False},
    "connections": {"webhook_secret": {"type": "generic"}, "app_db": {"type": "postgres"}},
    "flows": {
        "invoice_events": {
            "trigger": {"type": "webhook", "signature": "standard_webhooks", "secret_connection": "webhook_secret",
                        # A record without its key is refused at the door (422), not loaded as a NULL id.
                        "payload_schema": {"type": "object", "required": ["invoice_id"]}},
            "steps": [
                {
                    "id": "normalise",
                    "kind": "transform",
                    "callable": "b2b_integrations.transforms.common.select_columns",
                    "options": {"rename": {"invoice_id": "id"}, "columns": list(INVOICE_COLUMNS)},
                },
                {"id": "load_invoices", "kind": "load", "connection": "app_db", "table": "invoice_events",
                 "mode": "insert"},
            ],
        }
    },
}  # fmt: skip

FILES_TEMPLATE: dict[str, Any] = {
    "name": "fault_files",
    "description": "Order files from an SFTP folder, loaded by plain INSERT (no key).",
    # No retries: the scenario triggers the next run itself once the server is back.
    "defaults": {"retries": 0},
    "config": {"remote_folder": {"type": "string", "pattern": "^/.*"}},
    "connections": {"partner_sftp": {"type": "sftp"}, "app_db": {"type": "postgres"}},
    "flows": {
        "orders": {
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "id": "import_files",
                    "kind": "sftp_import",
                    "connection": "partner_sftp",
                    "folder": "${config.remote_folder}",
                    "pattern": "*.csv",
                    "format": {"format": "csv"},
                    "schema": {"fields": [
                        {"name": "order_id", "type": "string", "required": True},
                        {"name": "order_date", "type": "date", "required": True},
                        {"name": "sku", "type": "string", "required": True},
                        {"name": "quantity", "type": "integer", "required": True},
                    ]},
                    "db_connection": "app_db",
                    "table": "partner_orders",
                    "mode": "insert",
                    "constants": {"customer_id": "${customer.id}"},
                    "source_file_column": "source_file",
                    "settle_seconds": 0,
                }
            ],
        }
    },
}  # fmt: skip


@dataclass
class Deployment:
    """The running deployment and what the scenarios need to act on it and to count."""

    stack: AirflowStack
    cluster: PgCluster
    sshd: SshServer
    proxy: ThrottleProxy
    include: Path
    files_folder: Path  # gamma's SFTP folder (the same path locally and on the server)
    sensor_folder: Path  # sensorco's
    dbs: dict[str, str] = field(default_factory=dict)  # customer -> app database name
    restarts_before: dict[str, int] = field(default_factory=dict)  # the stack's restarts when a test began

    def report(self, scenario: str, **figures: Any) -> None:
        """:func:`report`, with the components that exited and were started again during the scenario."""
        restarted = {
            name: n - self.restarts_before.get(name, 0)
            for name, n in self.stack.restarts.items()
            if n > self.restarts_before.get(name, 0)
        }
        report(scenario, **figures, components_restarted=restarted)

    def app_rows(self, customer: str, query: str) -> list[tuple[Any, ...]]:
        import psycopg2

        with psycopg2.connect(f"{self.cluster.url}/{self.dbs[customer]}", connect_timeout=5) as conn:
            with conn.cursor() as cur:
                cur.execute(query)
                return cur.fetchall()

    def webhook_url(self, customer: str) -> str:
        return f"{self.stack.url}/b2b/webhooks/{customer}/fault_webhooks/invoice_events"

    def dag_states(self, dag_id: str) -> dict[str, int]:
        return dict(
            self.stack.sql(f"SELECT state, count(*) FROM dag_run WHERE dag_id = '{dag_id}' GROUP BY state")
        )

    def unfinished_runs(self, dag_id: str) -> int:
        return self.stack.sql(
            f"SELECT count(*) FROM dag_run WHERE dag_id = '{dag_id}' AND state IN ('queued', 'running')"
        )[0][0]

    def trigger(self, dag_id: str, run_id: str) -> None:
        """Trigger a run through the REST API, as an operator or a client would."""
        response = httpx.post(
            f"{self.stack.url}/api/v2/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None},
            headers={"Authorization": f"Bearer {self.stack.token()}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        found = self.stack.sql(f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'")
        return found[0][0] if found else None

    def wait_run_finished(self, dag_id: str, run_id: str, timeout: float = 120) -> str:
        return self.stack.wait_for(
            f"run {run_id} of {dag_id} to finish",
            lambda: (state := self.run_state(dag_id, run_id)) in ("success", "failed") and state,
            timeout=timeout,
        )

    def run_failure_report(self, dag_id: str, run_id: str, tail: int = 3000) -> str:
        """Why a run did not succeed: each task instance that did not, with its try number and the tail of
        each of its log files (task and trigger logs), read now because ``stop()`` removes the log folder."""
        rows = self.stack.sql(
            "SELECT task_id, state, try_number FROM task_instance "
            f"WHERE dag_id = '{dag_id}' AND run_id = '{run_id}' ORDER BY task_id"
        )
        parts = [f"run {run_id} of {dag_id}: {self.run_state(dag_id, run_id)}; task instances {rows}"]
        for task_id, state, try_number in rows:
            if state == "success":
                continue
            parts.append(f"=== task {task_id}: {state}, try {try_number}")
            folder = self.stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
            logs = sorted(folder.rglob("*.log")) if folder.is_dir() else []
            if not logs:
                parts.append(f"(no log file under {folder})")
            for log in logs:
                parts.append(f"--- {log.relative_to(folder)} (last {tail} chars)")
                parts.append(log.read_text(errors="replace")[-tail:])
        # Who ended a task without it running (scheduler, executor, triggerer) says so in the audit log
        # (e.g. "state mismatch") and in its own log.
        events = self.stack.sql(
            "SELECT dttm, task_id, try_number, event, left(extra, 800) FROM log "
            f"WHERE dag_id = '{dag_id}' AND run_id = '{run_id}' AND task_id IS NOT NULL ORDER BY dttm"
        )
        parts.append(f"--- audit log of {run_id}")
        parts.extend(str(event) for event in events)
        for component in ("scheduler", "triggerer"):
            lines = [ln for ln in self.stack.log(component).splitlines() if run_id in ln]
            parts.append(f"--- {component} log lines naming {run_id} (last 15 of {len(lines)})")
            parts.extend(ln[:600] for ln in lines[-15:])
        return "\n".join(parts)


def signed_webhook(customer: str, invoice: str, msg_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """One Standard Webhooks delivery of an invoice for ``customer``'s route: body and headers."""
    body = json.dumps(
        {"invoice_id": invoice, "status": "paid", "amount_cents": 1250, "currency": "EUR"}
    ).encode()
    return body, signed_body(customer, body, msg_id or f"msg_{uuid.uuid4().hex}")


def signed_body(customer: str, body: bytes, msg_id: str) -> dict[str, str]:
    """Standard Webhooks headers that sign ``body`` with ``customer``'s secret."""
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRETS[customer]).sign(msg_id, now, body.decode()),
    }


def report(scenario: str, **figures: Any) -> None:
    """Print the scenario's figures and append them as JSON to $B2B_FAULT_REPORT (if set)."""
    line = {"scenario": scenario, **figures}
    print(f"\nFAULT FIGURES {json.dumps(line)}")
    target = os.environ.get("B2B_FAULT_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


@contextmanager
def running_deployment(root: Path) -> Iterator[Deployment]:
    """Start everything (in ``root``), yield the deployment, stop everything."""
    cluster = start_pg_cluster()
    sshd = start_sshd()
    # Throttled to 2 MB/s: a download of the scenario's ~3 MB file lasts over a second instead of milliseconds.
    proxy = ThrottleProxy(sshd.host, sshd.port, bytes_per_second=2_000_000)
    stack: AirflowStack | None = None
    try:
        files_folder = sshd.root / "gamma_orders"
        sensor_folder = sshd.root / "sensorco_files"
        files_folder.mkdir()
        sensor_folder.mkdir()
        dbs = {c: f"app_{c}" for c in (*WEBHOOK_CUSTOMERS, "gamma", "sensorco")}
        for db in dbs.values():
            cluster.create_database(db)
        columns = ", ".join(f"{name} {sql_type}" for name, sql_type in INVOICE_COLUMNS.items())
        for customer in WEBHOOK_CUSTOMERS:
            cluster.admin(f"CREATE TABLE invoice_events ({columns})", dbs[customer])
        cluster.admin(
            "CREATE TABLE partner_orders (order_id VARCHAR(40), order_date DATE, sku VARCHAR(40), "
            "quantity INTEGER, customer_id VARCHAR(60), source_file VARCHAR(255))",
            dbs["gamma"],
        )
        cluster.admin(
            "CREATE TABLE sensor_events (event_id VARCHAR(40), source_file VARCHAR(255))", dbs["sensorco"]
        )

        webhook_customers = {
            c: {"id": c, "name": c.title(), "integrations": {"fault_webhooks": {
                "connections": {"webhook_secret": f"{c}_secret", "app_db": f"{c}_db"}}}}
            for c in WEBHOOK_CUSTOMERS
        }  # fmt: skip
        gamma = {"id": "gamma", "name": "Gamma", "integrations": {"fault_files": {
            "config": {"remote_folder": str(files_folder)},
            "connections": {"partner_sftp": "gamma_sftp", "app_db": "gamma_db"}}}}  # fmt: skip
        include = write_include(
            root / "include",
            {"fault_webhooks": WEBHOOK_TEMPLATE, "fault_files": FILES_TEMPLATE},
            {**webhook_customers, "gamma": gamma},
        )
        # The project's DAG files (the factory, the config-problems file) and the sensor DAG, in one folder.
        dags = root / "dags"
        dags.mkdir()
        for dag_file in (REPO / "dags").glob("*.py"):
            shutil.copy(dag_file, dags)
        shutil.copy(HERE / "dags" / "fault_sensor_dag.py", dags)

        sftp = json.loads(sshd.airflow_conn_json())
        env = {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "B2B_FAULT_SENSOR_FOLDER": str(sensor_folder),
            "AIRFLOW_CONN_GAMMA_SFTP": json.dumps({**sftp, "port": proxy.port}),
            "AIRFLOW_CONN_SENSORCO_SFTP": sshd.airflow_conn_json(),
            # Detection times of a dead component, shortened from minutes so that the suite fits CI's
            # budget: a killed triggerer's triggers move to a live one after 10 s without heartbeat, a task
            # whose worker vanished is failed (and retried) after 30 s.
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # An include-folder change is seen on the next parse of the DAG files: every 5 s, not 30 s.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            **{f"AIRFLOW_CONN_{c.upper()}_DB": f"{cluster.url}/{db}" for c, db in dbs.items()},
            **{
                f"AIRFLOW_CONN_{c.upper()}_SECRET": json.dumps(
                    {"conn_type": "generic", "password": SECRETS[c]}
                )
                for c in WEBHOOK_CUSTOMERS
            },
        }
        stack = start_airflow_stack(
            include,
            env,
            components=("api-server", "scheduler", "dag-processor", "triggerer"),
            pg_url=cluster.url,
        )
        # As docker-compose.yaml's restart: always: a component that exits (Airflow's scheduler,
        # dag-processor and triggerer do when the database goes away) is started again; each scenario
        # reports which ones were.
        stack.restart_policy = "always"
        deployment = Deployment(stack, cluster, sshd, proxy, include, files_folder, sensor_folder, dbs)
        expected = {f"{c}__fault_webhooks__invoice_events" for c in WEBHOOK_CUSTOMERS} | {
            "gamma__fault_files__orders",
            "sensorco__fault_sensor__files",
        }
        stack.wait_for(
            "the fault suite's DAGs to be parsed and active",
            lambda: expected <= {d for (d,) in stack.sql("SELECT dag_id FROM dag WHERE NOT is_stale")},
            timeout=180,
        )
        for customer in WEBHOOK_CUSTOMERS:  # the inbox assets the webhook endpoint stores into
            stack.wait_for(
                f"{customer}'s inbox asset",
                lambda c=customer: stack.sql(
                    f"SELECT 1 FROM asset WHERE uri = 'b2b://{c}/fault_webhooks/invoice_events/inbox'"
                ),
            )
        yield deployment
    finally:
        if stack is not None:
            stack.stop()
        proxy.close()
        sshd.stop()
        cluster.destroy()


def wait_until(what: str, check: Any, timeout: float = 120, every: float = 0.2) -> Any:
    """Poll ``check()`` until truthy (for conditions outside the Airflow stack, e.g. while it is degraded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)
