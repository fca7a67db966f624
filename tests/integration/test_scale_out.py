"""Scale-out on Airflow's own distributed engine: 20 customers' pipelines of three patterns run at once on
CeleryExecutor (the machine's Redis as broker, two worker processes) and every one is right.

Workload (templates are the shipped ones, written to a temp include folder with the first flow triggered
manually so only the runs this test starts exist, and without retries so a failure shows as one):
- scheduled API import (``crm_contacts.contacts``, http_import) from the demo CRM, 7 customers;
- scheduled file import (``partner_orders_sftp.orders``, sftp_import) from a real OpenSSH server, 7 customers;
- transform + load (``inventory_sync.snapshot``) and the flow its output asset triggers
  (``low_stock_alerts``), 6 customers: the staged records cross from one task to the next, and from one
  DAG to another, whichever worker each task lands on.
Every customer loads into the same multi-tenant tables of one PostgreSQL database, keyed by customer_id.
It runs twice: workers sharing a data folder, and workers that share no folder (each its own
``B2B_DATA_DIR``) with staged records on S3 (moto's S3 server, tests/s3_server.py).

Select alone with ``pytest -m scale``.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from celery_stack import CeleryStack, redis_available, start_celery_stack
from crm_server import CrmServer, start_crm_server
from helpers import PG, shipped_template, write_include
from helpers import pg_rows as rows
from s3_server import S3Server
from sshd import SshServer

pytestmark = [
    pytest.mark.airflow_stack,
    pytest.mark.scale,
    pytest.mark.skipif(not redis_available(), reason="needs Redis on 127.0.0.1:6379"),
]

CONTACTS = 120
FILES_PER_CUSTOMER = 2
ORDERS_PER_FILE = 25
CRM, SFTP, INVENTORY = "crm_contacts", "partner_orders_sftp", "inventory_sync"
FIRST_FLOW = {CRM: "contacts", SFTP: "orders", INVENTORY: "snapshot"}


def _customers() -> dict[str, str]:
    """Customer id -> integration: 7 API imports, 7 file imports, 6 inventory syncs, interleaved."""
    cycle = [CRM, SFTP, INVENTORY]
    return {f"sc{i:02d}": cycle[i % 3] for i in range(20)}


def _manual(template: dict[str, Any], flow: str, **step_options: Any) -> dict[str, Any]:
    """The shipped template, its first flow triggered manually, no retries, the rest unchanged."""
    template["defaults"] = {"retries": 0}
    template["flows"][flow]["trigger"] = {"type": "manual"}
    template["flows"][flow]["steps"][0].update(step_options)
    return template


def _templates() -> dict[str, dict[str, Any]]:
    crm = _manual(shipped_template(CRM), "contacts")
    del crm["flows"]["invoices"]
    return {
        CRM: crm,
        # One second between the two listings is enough here: the files are complete before the run.
        SFTP: _manual(shipped_template(SFTP), "orders", settle_seconds=1),
        INVENTORY: _manual(shipped_template(INVENTORY), "snapshot"),
    }


def _sku_count(customer: str) -> int:
    return 10 + int(customer[2:])


def _customer_file(customer: str, integration: str, folders: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any]
    if integration == CRM:
        entry = {"config": {"page_size": 50}, "connections": {"crm_api": "scale_crm", "app_db": "scale_db"}}
    elif integration == SFTP:
        entry = {
            "config": {"remote_folder": folders[customer]},
            "connections": {"partner_sftp": "scale_sftp", "app_db": "scale_db"},
        }
    else:
        entry = {
            "config": {"sku_count": _sku_count(customer), "low_stock_threshold": 20},
            "connections": {"warehouse_db": "scale_db"},
        }
    return {"id": customer, "name": f"Scale {customer}", "integrations": {integration: entry}}


def _drop_order_files(sshd: SshServer, customer: str) -> str:
    folder = Path(sshd.root) / f"scale_{customer}_{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    for n in range(FILES_PER_CUSTOMER):
        lines = ["order_id,order_date,sku,quantity,unit_price,status"] + [
            f"{customer.upper()}-{n}-{i},2026-01-{1 + i % 28:02d},SKU-{i % 7},{1 + i},9.50,new"
            for i in range(ORDERS_PER_FILE)
        ]
        (folder / f"orders-{n}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder)


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    server = start_crm_server(contacts=CONTACTS, access_log=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def staging(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where the workers stage records: their shared folder, or S3 with no folder shared."""
    if request.param == "shared_folder":
        return {"private_data_dirs": False, "env": {}, "bucket": None}
    s3: S3Server = request.getfixturevalue("s3")
    bucket = s3.new_bucket("scale")
    env = {
        "B2B_STAGING_URL": f"s3://{bucket}/staging",
        "B2B_STAGING_CONN_ID": "scale_s3",
        "AIRFLOW_CONN_SCALE_S3": s3.airflow_conn_json(),
    }
    return {"private_data_dirs": True, "env": env, "bucket": bucket, "s3": s3}


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    sshd: SshServer,
    crm: CrmServer,
    pg_db: str,
    staging: dict[str, Any],
) -> Iterator[tuple[CeleryStack, dict[str, str]]]:
    customers = _customers()
    folders = {c: _drop_order_files(sshd, c) for c, integration in customers.items() if integration == SFTP}
    templates = _templates()
    include = write_include(
        tmp_path_factory.mktemp("scale") / "include",
        templates,
        {c: _customer_file(c, integration, folders) for c, integration in customers.items()},
    )
    crm_conn = {
        "conn_type": "http",
        "host": crm.host,
        "port": crm.port,
        "login": crm.client_id,
        "password": crm.client_secret,
    }
    stack = start_celery_stack(
        include,
        {
            "AIRFLOW_CONN_SCALE_DB": f"{PG}/{pg_db}",
            "AIRFLOW_CONN_SCALE_CRM": json.dumps(crm_conn),
            "AIRFLOW_CONN_SCALE_SFTP": sshd.airflow_conn_json(),
            **staging["env"],
        },
        workers=2,
        concurrency=2,
        redis_db=11,
        private_data_dirs=staging["private_data_dirs"],
    )
    try:
        yield stack, folders
    finally:
        stack.stop()


def _dag_ids() -> list[str]:
    return [f"{c}__{integration}__{FIRST_FLOW[integration]}" for c, integration in _customers().items()]


def _trigger_all(stack: CeleryStack, dag_ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {stack.token()}"}
    now = datetime.now(UTC).isoformat()

    def trigger(dag_id: str) -> int:
        response = httpx.post(
            f"{stack.url}/api/v2/dags/{dag_id}/dagRuns",
            json={"dag_run_id": "scale_run", "logical_date": now},
            headers=headers,
            timeout=60,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = dict(zip(dag_ids, pool.map(trigger, dag_ids), strict=True))
    assert set(statuses.values()) == {200}, statuses


# The S3 variant was skipped from 2026-12-03 after two runs at load 15-30 stalled once every task had
# succeeded; on 2026-12-04 it passed 5 times in 47-77 s (4 on a quiet host, 1 at load 8.5), and a stall
# now fails with every run's and task's state.
@pytest.mark.parametrize("staging", ["shared_folder", "s3_no_shared_folder"], indirect=True, scope="module")
def test_twenty_customers_run_concurrently_on_two_celery_workers(
    deployment: tuple[CeleryStack, dict[str, str]], pg_db: str, sshd: SshServer, staging: dict[str, Any]
) -> None:
    stack, folders = deployment
    customers = _customers()
    dag_ids = _dag_ids()
    alert_dags = [f"{c}__{INVENTORY}__low_stock_alerts" for c, i in customers.items() if i == INVENTORY]
    every_dag = dag_ids + alert_dags
    stack.wait_for(
        f"the {len(every_dag)} DAGs to be parsed",
        lambda: (
            stack.sql("SELECT count(*) FROM dag JOIN serialized_dag USING (dag_id) WHERE dag_id LIKE 'sc%'")[
                0
            ][0]
            == len(every_dag)
        ),
        timeout=180,
    )
    _trigger_all(stack, dag_ids)

    def finished() -> bool:
        states = stack.sql("SELECT dag_id, state FROM dag_run")
        done = {dag for dag, state in states if state in ("success", "failed")}
        return done >= set(every_dag) and len(done) == len(states)

    # Bounded for a shared host under load (each task start parses DAGs); a healthy run needs far less.
    try:
        stack.wait_for("every run (and the runs their assets triggered) to finish", finished, timeout=900)
    except TimeoutError as e:
        # Where each run and task stood: see the note above the test.
        states = stack.sql("SELECT dag_id, state FROM dag_run ORDER BY dag_id")
        tis = stack.sql("SELECT dag_id, task_id, state, hostname FROM task_instance ORDER BY dag_id, task_id")
        raise AssertionError(f"runs: {states}\ntask instances: {tis}\n{e}") from None

    # Every run succeeded, exactly one per DAG (one manual, one asset-triggered per inventory customer).
    runs = stack.sql("SELECT dag_id, run_type, state FROM dag_run ORDER BY dag_id")
    assert sorted(dag for dag, _, _ in runs) == sorted(every_dag)
    failed = [(dag, state) for dag, _, state in runs if state != "success"]
    assert not failed, f"{failed}\n{_failure_logs(stack)}"
    assert Counter(run_type for _, run_type, _ in runs) == {"manual": 20, "asset_triggered": 6}

    # Every task succeeded on its first try, on a Celery worker, and both workers took a share.
    tis = stack.sql("SELECT dag_id, task_id, state, try_number, hostname, queue FROM task_instance")
    assert len(tis) == 7 + 7 + 6 * (3 + 2)
    assert {(state, tries) for _, _, state, tries, _, _ in tis} == {("success", 1)}
    assert {queue for *_, queue in tis} == {stack.queue}
    per_worker = Counter(hostname for _, _, _, _, hostname, _ in tis)
    assert set(per_worker) == {"worker1", "worker2"}, per_worker
    # Steps of one run took turns on both workers, so staged records crossed from one to the other (all
    # 12 multi-task runs staying on one worker each: odds about 1 in 250,000).
    hosts_per_run = {dag: {h for d, _, _, _, h, _ in tis if d == dag} for dag in every_dag}
    assert any(len(hosts) == 2 for hosts in hosts_per_run.values()), hosts_per_run
    # Celery, not a local process, ran them: each task's Celery id has a SUCCESS in the result backend
    # (written by the worker just after the task reported its own state, hence the wait).
    stack.wait_for(
        "Celery's results",
        lambda: not stack.sql("SELECT 1 FROM celery_taskmeta WHERE status NOT IN ('SUCCESS', 'FAILURE')"),
    )
    outcome = stack.sql(
        "SELECT ti.external_executor_id, m.status FROM task_instance ti "
        "LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id"
    )
    assert {status for _, status in outcome} == {"SUCCESS"} and len(outcome) == len(tis)

    _assert_results(pg_db, customers, folders)
    if staging["bucket"] is not None:
        _assert_staged_on_s3(stack, staging, customers)


def _assert_staged_on_s3(stack: CeleryStack, staging: dict[str, Any], customers: dict[str, str]) -> None:
    """Every multi-step run's records went through the bucket, and no worker staged anything locally."""
    keys = staging["s3"].keys(staging["bucket"], "staging/runs/")
    staged_customers = {key.split("/")[2] for key in keys}
    assert staged_customers == {c for c, i in customers.items() if i == INVENTORY}, keys
    assert not any(key.endswith(".tmp") for key in keys)
    for worker in stack.workers:
        assert not (stack.airflow.home / f"b2b_data_{worker}" / "runs").exists()


def _assert_results(pg_db: str, customers: dict[str, str], folders: dict[str, str]) -> None:
    by = {
        integration: sorted(c for c, i in customers.items() if i == integration) for integration in FIRST_FLOW
    }

    contacts = dict(rows(pg_db, "SELECT customer_id, count(DISTINCT id) FROM crm_contacts GROUP BY 1"))
    assert contacts == {c: CONTACTS for c in by[CRM]}
    assert rows(pg_db, "SELECT count(*) FROM crm_contacts") == [(CONTACTS * len(by[CRM]),)]

    orders = dict(rows(pg_db, "SELECT customer_id, count(*) FROM partner_orders GROUP BY 1"))
    assert orders == {c: FILES_PER_CUSTOMER * ORDERS_PER_FILE for c in by[SFTP]}
    for customer in by[SFTP]:
        # Every file loaded and moved once: nothing left behind, nothing failed or quarantined.
        assert sorted(p.name for p in Path(folders[customer]).iterdir()) == ["processed"]
        assert len(list(Path(folders[customer], "processed").iterdir())) == FILES_PER_CUSTOMER

    levels = rows(
        pg_db,
        "SELECT customer_id, count(*), count(*) FILTER (WHERE low_stock) FROM inventory_levels GROUP BY 1",
    )
    assert {c: n for c, n, _ in levels} == {c: _sku_count(c) for c in by[INVENTORY]}
    assert rows(pg_db, "SELECT count(*) FROM inventory_levels WHERE low_stock <> (on_hand < 20)") == [(0,)]
    alerts = dict(rows(pg_db, "SELECT customer_id, count(*) FROM low_stock_alerts GROUP BY 1"))
    assert alerts == {c: low for c, _, low in levels if low}


def _failure_logs(stack: CeleryStack) -> str:
    return "\n".join(f"--- {name}\n{stack.log(name)[-2500:]}" for name in stack.airflow.procs)
