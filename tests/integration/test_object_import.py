"""Scheduled file import from object storage against a real S3-protocol server (moto's standalone server,
tests/s3_server.py) and a real PostgreSQL database, plus file:// for what a bucket cannot show (a file
still being written)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException

from b2b_integrations.operators.object_import import ObjectStorageImportOperator
from b2b_integrations.sources.files import stand_in_name
from helpers import PG, REPO
from helpers import pg_rows as rows
from s3_server import S3Server

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "docs" / "examples" / "object_storage"
ORDERS_CSV = "order_id,order_date,quantity,status\nA-1,2025-01-02,3,new\nA-2,2025-01-03,1,shipped\n"
SCHEMA = {
    "fields": [
        {"name": "order_id", "type": "string", "required": True},
        {"name": "order_date", "type": "date", "required": True},
        {"name": "quantity", "type": "integer", "required": True},
        {"name": "status", "type": "string", "allowed": ["new", "shipped", "cancelled"]},
    ]
}
COLUMNS = {
    "order_id": "VARCHAR(40)",
    "order_date": "DATE",
    "quantity": "INTEGER",
    "status": "VARCHAR(20)",
    "customer_id": "VARCHAR(60)",
    "source_file": "VARCHAR(255)",
}


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.new_bucket()


@pytest.fixture
def storage_conn(s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A connection shared by every customer, confined per customer by its root."""
    conn_id = f"drop_{uuid.uuid4().hex[:8]}"
    conn = s3.airflow_conn_json(b2b_root=f"s3://{bucket}/customers/{{customer}}")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn)
    return conn_id


@pytest.fixture
def db_conn(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_OBJSTORE_TEST_DB", f"{PG}/{pg_db}")
    return "objstore_test_db"


def make_operator(
    storage_conn: str, db_conn: str, table: str, **overrides: Any
) -> ObjectStorageImportOperator:
    customer = overrides.pop("customer_id", "acme")
    arguments: dict[str, Any] = {
        "storage_conn_id": storage_conn,
        "folder": "orders/inbox",
        "pattern": "*.csv",
        "file_format": {"format": "csv"},
        "row_schema": SCHEMA,
        "db_conn_id": db_conn,
        # "Loaded once" is checked on a table without a key: an upsert by key would hide a file loaded twice.
        "target": {"table": table, "mode": "insert", "columns": COLUMNS, "create_table": True},
        "constants": {"customer_id": customer},
        "source_file_column": "source_file",
        "settle_seconds": 0.3,
    }
    arguments.update(overrides)
    return ObjectStorageImportOperator(
        task_id="import_files", customer_id=customer, integration="orders", flow="files", **arguments
    )


def table_name() -> str:
    return f"s3orders_{uuid.uuid4().hex[:8]}"


def put(s3: S3Server, bucket: str, key: str, body: str | bytes) -> None:
    s3.client().put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def get(s3: S3Server, bucket: str, key: str) -> str:
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read().decode()


INBOX = "customers/acme/orders/inbox"


def test_files_with_odd_names_load_once_and_move_to_processed(
    s3: S3Server, bucket: str, storage_conn: str, db_conn: str, pg_db: str
) -> None:
    put(s3, bucket, f"{INBOX}/orders 1 ü.csv", ORDERS_CSV)
    put(s3, bucket, f"{INBOX}/notes.txt", "not matched by the pattern")
    # Keys whose remainder holds a '/' are sub-folders to the store: never imported, never touched.
    put(s3, bucket, f"{INBOX}/../escape.csv", ORDERS_CSV)
    put(s3, bucket, f"{INBOX}/deeper/nested.csv", ORDERS_CSV)
    table = table_name()
    result = make_operator(storage_conn, db_conn, table).execute({})  # type: ignore[arg-type]
    assert (result["files_loaded"], result["rows_loaded"], result["rows_quarantined"]) == (1, 2, 0)
    assert rows(pg_db, f"SELECT order_id, quantity, customer_id, source_file FROM {table} ORDER BY 1") == [
        ("A-1", 3, "acme", "orders 1 ü.csv"),
        ("A-2", 1, "acme", "orders 1 ü.csv"),
    ]
    assert s3.keys(bucket) == sorted(
        [
            f"{INBOX}/../escape.csv",
            f"{INBOX}/deeper/nested.csv",
            f"{INBOX}/notes.txt",
            f"{INBOX}/processed/orders 1 ü.csv",
        ]
    )
    assert get(s3, bucket, f"{INBOX}/processed/orders 1 ü.csv") == ORDERS_CSV

    # The same content sent again (a partner's retry, or a run stopped between its commit and the move):
    # recognised by the ledger, moved, not loaded twice; the processed copy is not replaced.
    put(s3, bucket, f"{INBOX}/orders 1 ü.csv", ORDERS_CSV)
    again = make_operator(storage_conn, db_conn, table).execute({})  # type: ignore[arg-type]
    assert (again["files_loaded"], again["files_already_loaded"], again["rows_loaded"]) == (0, 1, 0)
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(2,)]
    assert not any(k.startswith(f"{INBOX}/orders") for k in s3.keys(bucket))
    assert make_operator(storage_conn, db_conn, table).execute({})["files_loaded"] == 0  # type: ignore[arg-type]


def test_bad_rows_quarantined_hostile_names_and_unparseable_files_fail_alone(
    s3: S3Server, bucket: str, storage_conn: str, db_conn: str, pg_db: str
) -> None:
    put(s3, bucket, f"{INBOX}/good.csv", ORDERS_CSV + "A-3,not a date,1,new\n")
    put(s3, bucket, f"{INBOX}/..evil.csv", ORDERS_CSV)
    put(s3, bucket, f"{INBOX}/bell\x07.csv", ORDERS_CSV)
    put(s3, bucket, f"{INBOX}/broken.csv", 'order_id,order_date\n"unterminated\n')
    table = table_name()
    with pytest.raises(AirflowFailException) as failed:
        make_operator(storage_conn, db_conn, table).execute({})  # type: ignore[arg-type]
    message = str(failed.value)
    assert "3 file(s) failed" in message and "file name refused" in message
    assert rows(pg_db, f"SELECT order_id FROM {table} ORDER BY 1") == [("A-1",), ("A-2",)]
    keys = s3.keys(bucket)
    assert f"{INBOX}/processed/good.csv" in keys
    report = get(s3, bucket, f"{INBOX}/quarantine/good.csv.quarantine.csv")
    assert "A-3" in report and "order_date" in report
    for name in ("..evil.csv", "bell\x07.csv"):
        assert f"{INBOX}/failed/{stand_in_name(name)}" in keys
        assert f"{INBOX}/failed/{stand_in_name(name)}.error.txt" in keys
    assert f"{INBOX}/failed/broken.csv.error.txt" in keys
    assert not any(k.rsplit("/", 1)[0] == INBOX for k in keys)  # nothing left in the inbox
    assert not any(k.endswith((".part", "-pending")) for k in keys)


def test_a_customer_reads_only_under_its_own_root(
    s3: S3Server,
    bucket: str,
    storage_conn: str,
    db_conn: str,
    pg_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put(s3, bucket, "customers/globex/orders/inbox/theirs.csv", ORDERS_CSV)
    table = table_name()
    # acme's run on the shared connection sees only customers/acme/...
    assert make_operator(storage_conn, db_conn, table).execute({})["files_loaded"] == 0  # type: ignore[arg-type]
    # A folder that climbs out (a customer's config value filled into the template) is refused before
    # anything is listed, and so is one holding a URL.
    for folder in ("../globex/orders/inbox", "orders/../../globex", "s3://other-bucket/x", "/customers"):
        with pytest.raises(AirflowFailException, match="folder"):
            make_operator(storage_conn, db_conn, table, folder=folder).execute({})  # type: ignore[arg-type]
    # A connection that names no root is refused: a bucket credential alone would reach every prefix.
    monkeypatch.setenv("AIRFLOW_CONN_ROOTLESS", s3.airflow_conn_json())
    with pytest.raises(AirflowFailException, match="no 'b2b_root'") as refused:
        make_operator("rootless", db_conn, table).execute({})  # type: ignore[arg-type]
    assert "testing" not in str(refused.value)  # the credential never appears in the error
    assert s3.keys(bucket) == ["customers/globex/orders/inbox/theirs.csv"]
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(0,)]


def test_file_url_root_and_a_file_still_being_written(
    tmp_path: Path, db_conn: str, pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOCAL_DROP",
        json.dumps({"conn_type": "fs", "extra": {"b2b_root": f"file://{tmp_path}/{{customer}}"}}),
    )
    inbox = tmp_path / "acme" / "orders" / "inbox"
    inbox.mkdir(parents=True)
    path = inbox / "growing.csv"
    path.write_text("order_id,order_date,quantity,status\n")
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with path.open("a") as f:
                f.write(f"G-{n},2025-01-01,1,new\n")
            time.sleep(0.1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    table = table_name()
    try:
        first = make_operator("local_drop", db_conn, table, settle_seconds=1.0).execute({})  # type: ignore[arg-type]
    finally:
        stop.set()
        thread.join()
    assert (first["files_still_writing"], first["files_loaded"]) == (1, 0)
    written = path.read_text().count("\n") - 1
    second = make_operator("local_drop", db_conn, table).execute({})  # type: ignore[arg-type]
    assert (second["files_loaded"], second["rows_loaded"]) == (1, written)
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["growing.csv"]


_KILLED_RUN = """
import sys
from b2b_integrations.operators.object_import import ObjectStorageImportOperator
op = ObjectStorageImportOperator(
    task_id="import_files", customer_id="acme", integration="orders", flow="files",
    storage_conn_id=sys.argv[1], db_conn_id=sys.argv[2], folder="orders/inbox",
    pattern="*.csv", file_format={"format": "csv"}, row_schema=%r, constants={"customer_id": "acme"},
    target={"table": sys.argv[3], "mode": "insert", "columns": %r, "create_table": True, "chunk_size": 5000},
    settle_seconds=0,
)
op.execute({})
"""


def _big_file_in_flight(pg_db: str) -> bool:
    small_done = rows(
        pg_db,
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'b2b_file_ledger'",
    ) == [(1,)] and rows(
        pg_db, "SELECT count(*) FROM b2b_file_ledger WHERE file_name = 'a-small.csv' AND status = 'loaded'"
    ) == [(1,)]
    writing = rows(
        pg_db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL",
    )
    return small_done and writing != [(0,)]


def test_a_worker_killed_mid_import_loses_and_duplicates_nothing(
    s3: S3Server, bucket: str, storage_conn: str, db_conn: str, pg_db: str, tmp_path: Path
) -> None:
    """SIGKILL while a big file is being written to the database (a worker host lost), then the retry."""
    big = "order_id,order_date,quantity,status\n" + "".join(
        f"B-{n},2025-01-01,{n % 50},new\n" for n in range(300_000)
    )
    put(s3, bucket, f"{INBOX}/a-small.csv", ORDERS_CSV)
    put(s3, bucket, f"{INBOX}/b-big.csv", big)
    table = table_name()
    script = tmp_path / "objstore_run.py"
    script.write_text(_KILLED_RUN % (SCHEMA, {k: v for k, v in COLUMNS.items() if k != "source_file"}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "tests")])}
    log = tmp_path / "objstore_run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), storage_conn, db_conn, table],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        # Killed once the small file is committed and the big file's rows are going into its open
        # transaction (a backend of this database that holds a transaction id has written something).
        deadline = time.monotonic() + 180
        while not _big_file_in_flight(pg_db):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    loaded_before = rows(pg_db, f"SELECT count(*) FROM {table}")[0][0]
    assert loaded_before == 2  # the small file committed; nothing of the big one
    retry = make_operator(
        storage_conn,
        db_conn,
        table,
        target={
            "table": table,
            "mode": "insert",
            "columns": COLUMNS,
            "create_table": True,
            "chunk_size": 5000,
        },
        source_file_column=None,
    ).execute({})  # type: ignore[arg-type]
    assert (retry["files_loaded"], retry["rows_loaded"]) == (1, 300_000)
    assert rows(pg_db, f"SELECT count(*), count(DISTINCT order_id) FROM {table}") == [(300_002, 300_002)]
    assert s3.keys(bucket, INBOX + "/") == [f"{INBOX}/processed/a-small.csv", f"{INBOX}/processed/b-big.csv"]


def test_the_documented_example_runs_as_a_generated_dag(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
    s3: S3Server,
    bucket: str,
    pg_db: str,
) -> None:
    """docs/examples/object_storage, deployed as written, imports acme's file through the generated DAG."""
    from airflow.dag_processing.dagbag import DagBag

    from helpers import write_include

    template = yaml.safe_load((EXAMPLE / "integrations" / "partner_orders_s3.yaml").read_text())
    customer = yaml.safe_load((EXAMPLE / "customers" / "acme.yaml").read_text())
    include = write_include(tmp_path / "include", {"partner_orders_s3": template}, {"acme": customer})
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNER_DROP", s3.airflow_conn_json(b2b_root=f"s3://{bucket}/customers/{{customer}}")
    )
    monkeypatch.setenv("AIRFLOW_CONN_APP_DB", f"{PG}/{pg_db}")
    put(s3, bucket, f"{INBOX}/day1.csv", ORDERS_CSV)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    run = bag.dags["acme__partner_orders_s3__orders"].test()
    assert run.state == "success"
    assert rows(pg_db, "SELECT customer_id, order_id, source_file FROM s3_partner_orders ORDER BY 2") == [
        ("acme", "A-1", "day1.csv"),
        ("acme", "A-2", "day1.csv"),
    ]
    assert s3.keys(bucket) == [f"{INBOX}/processed/day1.csv"]
