"""Scheduled file import against a real OpenSSH server and a real PostgreSQL database."""

from __future__ import annotations

import gc
import json
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from airflow.sdk.exceptions import AirflowFailException

from b2b_integrations.config.sql_target import with_target
from b2b_integrations.errors import StepError
from b2b_integrations.operators.sftp_import import SftpFileImportOperator
from b2b_integrations.sources.files import stand_in_name
from helpers import PG
from helpers import pg_rows as rows

pytestmark = pytest.mark.e2e

ORDERS_CSV = (
    "order_id,order_date,sku,quantity,status\nA-1,2025-01-02,SKU-1,3,new\nA-2,2025-01-03,SKU-2,1,shipped\n"
)
SCHEMA = {
    "fields": [
        {"name": "order_id", "type": "string", "required": True},
        {"name": "order_date", "type": "date", "required": True},
        {"name": "sku", "type": "string", "required": True},
        {"name": "quantity", "type": "integer", "required": True},
        {"name": "status", "type": "string", "allowed": ["new", "shipped", "cancelled"]},
    ]
}
COLUMNS = {
    "order_id": "VARCHAR(40)",
    "order_date": "DATE",
    "sku": "VARCHAR(40)",
    "quantity": "INTEGER",
    "status": "VARCHAR(20)",
    "customer_id": "VARCHAR(60)",
    "source_file": "VARCHAR(255)",
}


@pytest.fixture
def db_conn(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_SFTP_TEST_DB", f"{PG}/{pg_db}")
    return "sftp_test_db"


def make_operator(
    sftp_conn: str, db_conn: str, folder: str, table: str, **overrides: Any
) -> SftpFileImportOperator:
    customer = overrides.pop("customer_id", "filecust")
    arguments: dict[str, Any] = {
        "sftp_conn_id": sftp_conn,
        "folder": folder,
        "pattern": "*.csv",
        "file_format": {"format": "csv"},
        "row_schema": SCHEMA,
        "db_conn_id": db_conn,
        "table": table,
        "key": ["customer_id", "order_id", "sku"],
        "constants": {"customer_id": customer},
        "source_file_column": "source_file",
        "columns": COLUMNS,
        "create_table": True,
        "settle_seconds": 0.5,
    }
    arguments.update(overrides)
    return SftpFileImportOperator(
        task_id="import_files",
        customer_id=customer,
        integration="orders",
        flow="files",
        **with_target(arguments),
    )


# "Loaded once" is checked on a table without a key: an upsert by key would hide a file loaded twice.
KEYLESS: dict[str, Any] = {"mode": "insert", "key": ()}


def table_name() -> str:
    return f"orders_{uuid.uuid4().hex[:8]}"


def test_csv_import_moves_file_and_second_run_imports_nothing(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    Path(sftp_folder, "orders-1.csv").write_text(ORDERS_CSV)
    Path(sftp_folder, "notes.txt").write_text("not matched by the pattern")
    table = table_name()
    op = make_operator(sftp_conn, db_conn, sftp_folder, table, **KEYLESS)
    result = op.execute({})  # type: ignore[arg-type]
    assert result["files_loaded"] == 1 and result["rows_loaded"] == 2 and result["rows_quarantined"] == 0
    assert rows(
        pg_db,
        f"SELECT order_id, order_date::text, quantity, customer_id, source_file FROM {table} ORDER BY 1",
    ) == [
        ("A-1", "2025-01-02", 3, "filecust", "orders-1.csv"),
        ("A-2", "2025-01-03", 1, "filecust", "orders-1.csv"),
    ]
    assert sorted(p.name for p in Path(sftp_folder).iterdir()) == ["notes.txt", "processed"]
    assert Path(sftp_folder, "processed", "orders-1.csv").read_text() == ORDERS_CSV

    # The same content delivered again is recognised by the ledger and not loaded twice.
    Path(sftp_folder, "orders-1.csv").write_text(ORDERS_CSV)
    again = make_operator(sftp_conn, db_conn, sftp_folder, table, **KEYLESS).execute({})  # type: ignore[arg-type]
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(2,)]
    assert again["rows_loaded"] == 0 and again["files_already_loaded"] == 1
    assert make_operator(sftp_conn, db_conn, sftp_folder, table, **KEYLESS).execute({})["files_loaded"] == 0  # type: ignore[arg-type]


def test_a_file_loaded_but_not_moved_is_moved_on_the_next_run_without_loading_twice(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    """A run that stopped between its commit and the move leaves the file, unchanged, in the folder."""
    import os
    import shutil

    Path(sftp_folder, "orders-1.csv").write_text(ORDERS_CSV)
    table = table_name()
    assert (
        make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="leftoverco", **KEYLESS).execute(
            {}
        )["files_loaded"]
        == 1
    )  # type: ignore[arg-type]
    # Put it back exactly as it was (same name, size and modification time): the state after such a crash.
    processed = Path(sftp_folder, "processed", "orders-1.csv")
    shutil.copy2(processed, Path(sftp_folder, "orders-1.csv"))
    os.utime(
        Path(sftp_folder, "orders-1.csv"), ns=(processed.stat().st_atime_ns, processed.stat().st_mtime_ns)
    )

    result = make_operator(
        sftp_conn, db_conn, sftp_folder, table, customer_id="leftoverco", **KEYLESS
    ).execute({})  # type: ignore[arg-type]
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(2,)]
    assert result["files_already_loaded"] == 1 and result["rows_loaded"] == 0
    assert not Path(sftp_folder, "orders-1.csv").exists()


FORMAT_CASES = {
    "tsv": ("orders.tsv", {"format": "tsv"}, ORDERS_CSV.replace(",", "\t")),
    "semicolon-latin1": (
        "orders.csv",
        {"format": "csv", "delimiter": ";", "encoding": "latin-1"},
        ORDERS_CSV.replace(",", ";").replace("SKU-1", "SKÜ-é"),
    ),
    "json": (
        "orders.json",
        {"format": "json", "record_path": "data.orders"},
        json.dumps(
            {
                "data": {
                    "orders": [
                        {
                            "order_id": "A-1",
                            "order_date": "2025-01-02",
                            "sku": "SKU-1",
                            "quantity": 3,
                            "status": "new",
                        },
                        {
                            "order_id": "A-2",
                            "order_date": "2025-01-03",
                            "sku": "SKU-2",
                            "quantity": 1,
                            "status": "shipped",
                        },
                    ]
                }
            }
        ),
    ),
    "ndjson": (
        "orders.ndjson",
        {"format": "ndjson"},
        '{"order_id": "A-1", "order_date": "2025-01-02", "sku": "SKU-1", "quantity": 3, "status": "new"}\n'
        '{"order_id": "A-2", "order_date": "2025-01-03", "sku": "SKU-2", "quantity": 1, "status": "shipped"}\n',
    ),
    "xml": (
        "orders.xml",
        {"format": "xml", "record_path": "order"},
        "<orders><order id='x'><order_id>A-1</order_id><order_date>2025-01-02</order_date><sku>SKU-1</sku>"
        "<quantity>3</quantity><status>new</status></order><order><order_id>A-2</order_id>"
        "<order_date>2025-01-03</order_date><sku>SKU-2</sku><quantity>1</quantity><status>shipped</status>"
        "</order></orders>",
    ),
}


@pytest.mark.parametrize("case", sorted(FORMAT_CASES))
def test_each_format_loads(case: str, sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str) -> None:
    name, file_format, content = FORMAT_CASES[case]
    encoding = file_format.get("encoding", "utf-8")
    Path(sftp_folder, name).write_bytes(content.encode(encoding))
    table = table_name()
    op = make_operator(sftp_conn, db_conn, sftp_folder, table, pattern="orders.*", file_format=file_format)
    assert op.execute({})["rows_loaded"] == 2  # type: ignore[arg-type]
    loaded = rows(pg_db, f"SELECT order_id, sku, quantity FROM {table} ORDER BY 1")
    assert [r[0] for r in loaded] == ["A-1", "A-2"] and [r[2] for r in loaded] == [3, 1]
    if case == "semicolon-latin1":
        assert loaded[0][1] == "SKÜ-é"


def test_excel_loads(sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Orders"
    sheet.append(["order_id", "order_date", "sku", "quantity", "status"])
    sheet.append(["A-1", "2025-01-02", "SKU-1", 3, "new"])
    sheet.append([])
    sheet.append(["A-2", "2025-01-03", "SKU-2", 1, "shipped"])
    book.save(Path(sftp_folder, "orders.xlsx"))
    table = table_name()
    op = make_operator(
        sftp_conn,
        db_conn,
        sftp_folder,
        table,
        pattern="*.xlsx",
        file_format={"format": "xlsx", "sheet": "Orders"},
    )
    assert op.execute({})["rows_loaded"] == 2  # type: ignore[arg-type]


def test_bad_rows_are_quarantined_and_the_rest_load(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    content = (
        ORDERS_CSV + "A-3,not-a-date,SKU-3,2,new\nA-4,2025-01-05,SKU-4,two,lost\nA-5,2025-01-06,SKU-5,5,new\n"
    )
    Path(sftp_folder, "mixed.csv").write_text(content)
    table = table_name()
    result = make_operator(sftp_conn, db_conn, sftp_folder, table).execute({})  # type: ignore[arg-type]
    assert (result["rows_loaded"], result["rows_quarantined"]) == (3, 2)
    assert result["rows_loaded"] + result["rows_quarantined"] == content.count("\n") - 1
    report = Path(sftp_folder, "quarantine", "mixed.csv.quarantine.csv").read_text()
    assert "mixed.csv,3," in report and "order_date" in report
    assert "mixed.csv,4," in report and "quantity" in report and "status" in report
    assert rows(pg_db, f"SELECT order_id FROM {table} ORDER BY 1") == [("A-1",), ("A-2",), ("A-5",)]


def test_unparseable_file_goes_to_failed_and_the_run_fails(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    Path(sftp_folder, "a-good.xml").write_text(
        "<orders><order><order_id>A-1</order_id><order_date>2025-01-02</order_date><sku>S</sku>"
        "<quantity>1</quantity></order></orders>"
    )
    Path(sftp_folder, "b-broken.xml").write_text("<orders><order><order_id>A-9</order_id></orders>")
    table = table_name()
    op = make_operator(
        sftp_conn,
        db_conn,
        sftp_folder,
        table,
        customer_id="brokenco",
        pattern="*.xml",
        file_format={"format": "xml", "record_path": "order"},
    )
    with pytest.raises(AirflowFailException) as err:
        op.execute({})  # type: ignore[arg-type]
    message = str(err.value)
    assert "customer brokenco" in message and "b-broken.xml" in message
    assert Path(sftp_folder, "failed", "b-broken.xml").exists()
    assert "b-broken.xml" in Path(sftp_folder, "failed", "b-broken.xml.error.txt").read_text()
    assert Path(sftp_folder, "processed", "a-good.xml").exists()  # the good file still loaded
    assert rows(pg_db, f"SELECT order_id FROM {table}") == [("A-1",)]


def test_all_rows_invalid_fails_the_file(sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str) -> None:
    Path(sftp_folder, "junk.csv").write_text("order_id,order_date,sku,quantity,status\nX,nope,S,x,zzz\n")
    table = table_name()
    with pytest.raises(AirflowFailException, match="junk.csv.*all 1 records are invalid"):
        make_operator(sftp_conn, db_conn, sftp_folder, table).execute({})  # type: ignore[arg-type]
    assert Path(sftp_folder, "failed", "junk.csv").exists()
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(0,)]


def test_file_still_being_written_is_left_for_the_next_run(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    path = Path(sftp_folder, "growing.csv")
    path.write_text("order_id,order_date,sku,quantity,status\n")
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with path.open("a") as f:
                f.write(f"G-{n},2025-01-01,SKU-{n},1,new\n")
            time.sleep(0.1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    table = table_name()
    try:
        first = make_operator(sftp_conn, db_conn, sftp_folder, table, settle_seconds=1.0).execute({})  # type: ignore[arg-type]
    finally:
        stop.set()
        thread.join()
    assert first["files_still_writing"] == 1 and first["files_loaded"] == 0
    written = path.read_text().count("\n") - 1
    second = make_operator(sftp_conn, db_conn, sftp_folder, table, settle_seconds=1.0).execute({})  # type: ignore[arg-type]
    assert second["files_loaded"] == 1 and second["rows_loaded"] == written


def test_hostile_file_name_is_refused(sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str) -> None:
    Path(sftp_folder, "..evil.csv").write_text(ORDERS_CSV)
    Path(sftp_folder, "bell\x07.csv").write_text(ORDERS_CSV)
    table = table_name()
    with pytest.raises(AirflowFailException, match="file name refused"):
        make_operator(sftp_conn, db_conn, sftp_folder, table).execute({})  # type: ignore[arg-type]
    failed = sorted(p.name for p in Path(sftp_folder, "failed").iterdir())
    assert failed == sorted(
        [
            stand_in_name("..evil.csv"),
            stand_in_name("..evil.csv") + ".error.txt",
            stand_in_name("bell\x07.csv"),
            stand_in_name("bell\x07.csv") + ".error.txt",
        ]
    )
    assert all(name.startswith(("_evil.", "bell_.")) for name in failed)
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(0,)]


def test_connection_drop_mid_download_then_retry_loads_each_row_once(
    sshd: Any,
    sftp_conn: str,
    sftp_folder: str,
    db_conn: str,
    pg_db: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SSH sessions are killed while the big file is half downloaded: the run fails, and its retry
    loads every row of both files exactly once; both files sent again unchanged load nothing.

    The table has no key (``mode: insert``), so a row written twice would be two rows: the counts compare
    what the files hold with what was written, which an upsert by key would make equal whatever happened."""
    from throttle_proxy import ThrottleProxy

    Path(sftp_folder, "a-small.csv").write_text(ORDERS_CSV)
    big = ["order_id,order_date,sku,quantity,status"]
    big += [f"B-{i},2025-02-01,SKU-{i % 97},{i % 9 + 1},new" for i in range(150_000)]
    big_text = "\n".join(big) + "\n"
    Path(sftp_folder, "b-big.csv").write_text(big_text)
    # Loopback downloads take milliseconds: slow them down so that "half downloaded" lasts a while.
    proxy = ThrottleProxy(sshd.host, sshd.port, bytes_per_second=4_000_000)
    conn = json.loads(sshd.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_CONN_SFTP_THROTTLED", json.dumps({**conn, "port": proxy.port}))
    table = table_name()
    killed = threading.Event()

    def kill() -> None:
        if sshd.kill_sessions() > 0:
            killed.set()

    proxy.on_bytes(len(big_text) // 2, kill)
    keyless = {**KEYLESS, "chunk_size": 5000}
    try:
        # Downloads go through asyncssh (the provider's SFTPHookAsync): a dropped session is its Error
        # (ConnectionLost, or an SFTP error when the channel closes first), raised as it is or as the
        # step's error naming the customer, with the asyncssh error as its cause; never a file failure.
        with pytest.raises((asyncssh.Error, StepError)) as dropped:
            make_operator("sftp_throttled", db_conn, sftp_folder, table, **keyless).execute({})  # type: ignore[arg-type]
        assert isinstance(dropped.value, asyncssh.Error) or isinstance(
            dropped.value.__cause__, asyncssh.Error
        )
        assert killed.is_set()
        assert not Path(sftp_folder, "processed", "b-big.csv").exists()
        # asyncssh's parallel reads of the dropped session fail unawaited: freed, they are logged in one
        # line, never with a traceback formatted from inside a garbage-collector pass (see clients/sftp.py).
        del dropped  # its traceback holds those tasks
        gc.collect()
        assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
        retry = make_operator("sftp_throttled", db_conn, sftp_folder, table, **keyless).execute({})  # type: ignore[arg-type]
    finally:
        proxy.close()
    sent = 2 + 150_000
    assert rows(pg_db, f"SELECT count(*), count(DISTINCT (order_id, sku)) FROM {table}") == [(sent, sent)]
    assert retry["files_loaded"] + retry["files_already_loaded"] >= 1
    processed = Path(sftp_folder, "processed")
    assert sorted(p.name for p in processed.iterdir()) == ["a-small.csv", "b-big.csv"]

    # Sent again unchanged (a partner's retry): the ledger knows both, so nothing is written twice.
    for name in ("a-small.csv", "b-big.csv"):
        shutil.copy2(processed / name, Path(sftp_folder, name))
    again = make_operator(sftp_conn, db_conn, sftp_folder, table, **keyless).execute({})  # type: ignore[arg-type]
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(sent,)]
    assert (again["files_already_loaded"], again["rows_loaded"]) == (2, 0)


def test_shipped_template_runs_as_a_generated_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str, sshd: Any, sftp_folder: str, pg_db: str
) -> None:
    """The partner_orders_sftp template, deployed for one customer, imports a latin-1 ';' file end to end."""
    from airflow.dag_processing.dagbag import DagBag

    from helpers import REPO, shipped_template, write_include

    customer = {
        "id": "sftpco",
        "name": "SFTP Co",
        "integrations": {
            "partner_orders_sftp": {
                "config": {"remote_folder": sftp_folder, "delimiter": ";", "encoding": "latin-1"},
                "connections": {"partner_sftp": "sftpco_sftp", "app_db": "sftpco_db"},
            }
        },
    }
    include = write_include(
        tmp_path / "include",
        {"partner_orders_sftp": shipped_template("partner_orders_sftp")},
        {"sftpco": customer},
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_SFTPCO_SFTP", sshd.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_CONN_SFTPCO_DB", f"{PG}/{pg_db}")
    content = "order_id;order_date;sku;quantity;unit_price;status\nZ-1;2025-03-01;Größe-1;2;9.90;new\n"
    Path(sftp_folder, "day1.csv").write_bytes(content.encode("latin-1"))

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    run = bag.dags["sftpco__partner_orders_sftp__orders"].test()
    assert run.state == "success"
    assert rows(
        pg_db,
        # partner_orders is shared with the module's other generated-DAG test (any order): sftpco's rows.
        "SELECT customer_id, order_id, sku, quantity, unit_price::text, source_file FROM partner_orders"
        " WHERE customer_id = 'sftpco'",
    ) == [("sftpco", "Z-1", "Größe-1", 2, "9.90", "day1.csv")]
    assert Path(sftp_folder, "processed", "day1.csv").exists()


def test_duplicate_keys_in_a_file_keep_the_last_row(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    content = ORDERS_CSV + "A-1,2025-01-09,SKU-1,9,cancelled\n"  # A-1/SKU-1 again, later in the file
    Path(sftp_folder, "dupes.csv").write_text(content)
    table = table_name()
    result = make_operator(sftp_conn, db_conn, sftp_folder, table).execute({})  # type: ignore[arg-type]
    assert result["rows_loaded"] == 3
    assert rows(pg_db, f"SELECT order_id, quantity, status FROM {table} ORDER BY 1") == [
        ("A-1", 9, "cancelled"),
        ("A-2", 1, "shipped"),
    ]


def ledger_rows(pg_db: str, customer: str) -> list[tuple[Any, ...]]:
    return rows(
        pg_db,
        "SELECT file_name, status, rows_loaded FROM b2b_file_ledger "
        f"WHERE customer_id = '{customer}' ORDER BY file_name, status",
    )


def oldest_first(folder: str, *names: str) -> None:
    """Give the files increasing modification times in this order (the import takes oldest first)."""
    import os

    for age, name in enumerate(reversed(names), 1):
        os.utime(Path(folder, name), (time.time() - 100 * age, time.time() - 100 * age))


def test_a_failed_file_sent_again_is_retried_and_loads_once_the_config_is_fixed(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    content = (
        "order_id,order_date,sku,quantity,status\n"
        "R-1,2025-01-02,SKU-1,3,returned\nR-2,2025-01-03,SKU-2,1,returned\n"
    )
    table = table_name()
    for _ in range(2):  # failed, then sent again unchanged before the config is fixed: fails again
        Path(sftp_folder, "returns.csv").write_text(content)
        with pytest.raises(AirflowFailException, match="all 2 records are invalid"):
            make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="retryco").execute({})  # type: ignore[arg-type]
    assert ledger_rows(pg_db, "retryco") == [("returns.csv", "failed", 0)]

    fields = [dict(f) for f in SCHEMA["fields"]]
    fields[-1]["allowed"] = ["new", "shipped", "cancelled", "returned"]  # the config fix
    Path(sftp_folder, "returns.csv").write_text(content)  # sent again, still unchanged
    op = make_operator(
        sftp_conn, db_conn, sftp_folder, table, customer_id="retryco", row_schema={"fields": fields}
    )
    result = op.execute({})  # type: ignore[arg-type]
    assert (result["files_loaded"], result["files_already_loaded"], result["rows_loaded"]) == (1, 0, 2)
    assert rows(pg_db, f"SELECT order_id, status FROM {table} ORDER BY 1") == [
        ("R-1", "returned"),
        ("R-2", "returned"),
    ]
    assert Path(sftp_folder, "processed", "returns.csv").read_text() == content
    assert ledger_rows(pg_db, "retryco") == [("returns.csv", "loaded", 2)]


def test_a_refused_name_sent_again_does_not_stop_the_good_files(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    hostile = "bell\x07.csv"
    Path(sftp_folder, hostile).write_text(ORDERS_CSV)
    table = table_name()
    with pytest.raises(AirflowFailException, match="file name refused"):
        make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="refusedco").execute({})  # type: ignore[arg-type]

    Path(sftp_folder, hostile).write_text("sent again, other content\n")
    Path(sftp_folder, "good.csv").write_text(ORDERS_CSV)
    oldest_first(sftp_folder, hostile, "good.csv")  # the refused file comes first
    with pytest.raises(AirflowFailException, match="file name refused"):
        make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="refusedco").execute({})  # type: ignore[arg-type]
    assert Path(sftp_folder, "processed", "good.csv").read_text() == ORDERS_CSV
    assert rows(pg_db, f"SELECT order_id FROM {table} ORDER BY 1") == [("A-1",), ("A-2",)]
    failed = sorted(Path(sftp_folder, "failed").iterdir())
    kept = [p for p in failed if not p.name.endswith(".error.txt")]
    assert sorted(p.read_text() for p in kept) == sorted([ORDERS_CSV, "sent again, other content\n"])
    assert sorted(p.name for p in failed if p.name.endswith(".error.txt")) == sorted(
        f"{p.name}.error.txt" for p in kept
    )
    assert ledger_rows(pg_db, "refusedco") == [(hostile, "failed", 0), ("good.csv", "loaded", 2)]


def test_names_that_sanitise_alike_keep_their_own_failed_file_and_report(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    Path(sftp_folder, "a\nb.csv").write_text("first\n")
    Path(sftp_folder, "a\rb.csv").write_text("second\n")
    with pytest.raises(AirflowFailException, match="file name refused"):
        make_operator(sftp_conn, db_conn, sftp_folder, table_name(), customer_id="alikeco").execute({})  # type: ignore[arg-type]
    failed = Path(sftp_folder, "failed")
    kept = {p.read_text(): p.name for p in failed.iterdir() if not p.name.endswith(".error.txt")}
    assert sorted(kept) == ["first\n", "second\n"]
    # Each report sits beside its own file and names the remote name it came from (escaped).
    assert repr("a\nb.csv") in Path(failed, kept["first\n"] + ".error.txt").read_text()
    assert repr("a\rb.csv") in Path(failed, kept["second\n"] + ".error.txt").read_text()


def test_every_row_invalid_keeps_the_reasons_where_the_error_says(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    import re

    Path(sftp_folder, "all-bad.csv").write_text(
        "order_id,order_date,sku,quantity,status\nX-1,nope,S,1,new\nX-2,2025-01-02,S,two,new\n"
    )
    with pytest.raises(AirflowFailException) as err:
        make_operator(sftp_conn, db_conn, sftp_folder, table_name(), customer_id="allbadco").execute({})  # type: ignore[arg-type]
    found = re.search(r"per-row reasons in (\S+\.quarantine\.csv)", str(err.value))
    assert found, str(err.value)
    report = Path(found.group(1)).read_text()
    assert "all-bad.csv,1," in report and "order_date" in report
    assert "all-bad.csv,2," in report and "quantity" in report
    assert found.group(1) in Path(sftp_folder, "failed", "all-bad.csv.error.txt").read_text()


def test_a_version_sent_again_never_overwrites_a_processed_file(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    import hashlib

    v1 = ORDERS_CSV
    v2 = ORDERS_CSV.replace("SKU-1,3,new", "SKU-1,7,new")
    table = table_name()
    processed = Path(sftp_folder, "processed")

    def deliver(content: str) -> dict[str, Any]:
        Path(sftp_folder, "orders.csv").write_text(content)
        return make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="versionco").execute({})  # type: ignore[arg-type]

    assert deliver(v1)["files_loaded"] == 1
    assert deliver(v2)["files_loaded"] == 1
    assert (processed / "orders.csv").read_text() == v1  # the first one keeps its name
    assert deliver(v1)["files_already_loaded"] == 1  # the older version again: loaded before, not again
    assert rows(pg_db, f"SELECT quantity FROM {table} WHERE order_id = 'A-1'") == [(7,)]

    def tagged(content: str) -> str:
        return f"orders.{hashlib.sha256(content.encode()).hexdigest()[:12]}.csv"

    assert {p.name: p.read_text() for p in processed.iterdir()} == {
        "orders.csv": v1,
        tagged(v2): v2,
        tagged(v1): v1,
    }


def test_logs_escape_remote_names_and_errors_name_the_remote_file(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    import re

    Path(sftp_folder, "line\nbreak.csv").write_text(ORDERS_CSV)
    Path(sftp_folder, "dupe-columns.csv").write_text("order_id,order_id\n1,2\n")
    oldest_first(sftp_folder, "line\nbreak.csv", "dupe-columns.csv")
    capfd.readouterr()
    with pytest.raises(AirflowFailException) as err:
        make_operator(sftp_conn, db_conn, sftp_folder, table_name(), customer_id="namesco").execute({})  # type: ignore[arg-type]
    logged = capfd.readouterr().out  # the task logger writes to stdout here
    assert "line\nbreak" not in logged and repr("line\nbreak.csv") in logged
    message = str(err.value)
    assert "'dupe-columns.csv'" in message and "duplicate column" in message
    assert not re.search(r"\d{6}\.csv", message)  # never the local work file's name
    report = Path(sftp_folder, "failed", "dupe-columns.csv.error.txt").read_text()
    assert "customer namesco, integration orders, flow files, file 'dupe-columns.csv'" in report
    assert not re.search(r"\d{6}\.csv", report)


def test_a_file_the_database_refuses_fails_alone(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    """A value the schema accepts but the column cannot hold: that file fails, the next one loads."""
    Path(sftp_folder, "a-huge.csv").write_text(
        "order_id,order_date,sku,quantity,status\nH-1,2025-01-02,SKU-1,99999999999,new\n"
    )
    Path(sftp_folder, "b-good.csv").write_text(ORDERS_CSV)
    oldest_first(sftp_folder, "a-huge.csv", "b-good.csv")
    table = table_name()
    with pytest.raises(
        AirflowFailException, match="'a-huge.csv'.*database refused a value in column quantity"
    ):
        make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="hugeco").execute({})  # type: ignore[arg-type]
    assert Path(sftp_folder, "failed", "a-huge.csv").exists()
    assert Path(sftp_folder, "processed", "b-good.csv").exists()
    assert rows(pg_db, f"SELECT order_id FROM {table} ORDER BY 1") == [("A-1",), ("A-2",)]
    assert ledger_rows(pg_db, "hugeco") == [("a-huge.csv", "failed", 0), ("b-good.csv", "loaded", 2)]


def test_a_run_stopped_after_its_commit_still_publishes_the_quarantine_report(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops right after the commit, as the quarantine report is put in place: the retry
    finds the file already loaded, and the report of its bad row is still published."""
    import paramiko

    content = ORDERS_CSV + "A-3,not-a-date,SKU-3,2,new\n"
    Path(sftp_folder, "mixed.csv").write_text(content)
    table = table_name()
    real_rename = paramiko.SFTPClient.posix_rename

    def drop_at_the_report(self: paramiko.SFTPClient, old: str, new: str) -> None:
        if new.endswith(".quarantine.csv"):
            raise ConnectionResetError("connection dropped (test)")
        real_rename(self, old, new)

    monkeypatch.setattr(paramiko.SFTPClient, "posix_rename", drop_at_the_report)
    where = "customer droppedco, integration orders, flow files, step import_files"
    with pytest.raises(StepError, match=f"^{where}: ConnectionResetError: connection dropped") as dropped:
        make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="droppedco", **KEYLESS).execute({})  # type: ignore[arg-type]
    assert isinstance(dropped.value.__cause__, ConnectionResetError)  # Airflow retries it as before
    monkeypatch.setattr(paramiko.SFTPClient, "posix_rename", real_rename)
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(2,)]  # committed before the drop

    retry = make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="droppedco", **KEYLESS).execute(
        {}
    )  # type: ignore[arg-type]
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(2,)]
    assert (retry["files_already_loaded"], retry["rows_loaded"]) == (1, 0)
    assert Path(sftp_folder, "processed", "mixed.csv").read_text() == content
    report = Path(sftp_folder, "quarantine", "mixed.csv.quarantine.csv").read_text()
    assert "mixed.csv,3," in report and "order_date" in report
    assert sorted(p.name for p in Path(sftp_folder, "quarantine").iterdir()) == ["mixed.csv.quarantine.csv"]


def test_a_name_too_long_for_its_reports_is_refused_and_the_others_load(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    """240 bytes is a legal name, but ``.<name>.quarantine.csv.part`` would not be: refused, not a crash."""
    long_name = "o" * 236 + ".csv"
    Path(sftp_folder, long_name).write_text(ORDERS_CSV + "A-3,not-a-date,SKU-3,2,new\n")
    Path(sftp_folder, "good.csv").write_text(ORDERS_CSV)
    oldest_first(sftp_folder, long_name, "good.csv")
    table = table_name()
    with pytest.raises(AirflowFailException, match="file name refused: longer than 200 bytes"):
        make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="longco").execute({})  # type: ignore[arg-type]
    assert Path(sftp_folder, "processed", "good.csv").exists()
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(2,)]
    assert Path(sftp_folder, "failed", stand_in_name(long_name)).exists()


def test_a_name_that_is_not_utf8_is_refused_and_the_others_load(
    sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    """A latin-1 uploader's ``Bestellung-ü.csv``: the name's bytes are not UTF-8. The whole listing used to
    fail on it, every run, so no file of the folder was ever imported."""
    import os

    raw = b"Bestellung-\xfc.csv"
    Path(os.fsdecode(os.path.join(os.fsencode(sftp_folder), raw))).write_text(ORDERS_CSV)
    Path(sftp_folder, "good.csv").write_text(ORDERS_CSV)
    table = table_name()
    with pytest.raises(
        AirflowFailException, match=r"'Bestellung-\\udcfc.csv' \(file name refused: not valid UTF-8"
    ):
        make_operator(sftp_conn, db_conn, sftp_folder, table, customer_id="latinco").execute({})  # type: ignore[arg-type]
    assert Path(sftp_folder, "processed", "good.csv").exists()
    assert rows(pg_db, f"SELECT count(*) FROM {table}") == [(2,)]
    failed = {os.fsencode(p.name) for p in Path(sftp_folder, "failed").iterdir()}
    stand_in = stand_in_name(raw.decode("utf-8", "surrogateescape"))
    assert failed == {stand_in.encode(), f"{stand_in}.error.txt".encode()}
    assert Path(sftp_folder, "failed", stand_in).read_text() == ORDERS_CSV
    assert ledger_rows(pg_db, "latinco") == [("Bestellung-\\xfc.csv", "failed", 0), ("good.csv", "loaded", 2)]


def test_a_file_failed_by_a_wrong_customer_config_loads_after_the_fix_through_the_generated_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str, sshd: Any, sftp_folder: str, pg_db: str
) -> None:
    """The user's path: the customer's YAML has the wrong delimiter, the file fails; the YAML is fixed and
    the same file sent again, unchanged; the next run of the generated DAG loads it."""
    from airflow.dag_processing.dagbag import DagBag

    from helpers import REPO, shipped_template, write_include

    def deploy(delimiter: str) -> Any:
        customer = {
            "id": "fixco",
            "name": "Fix Co",
            "integrations": {
                "partner_orders_sftp": {
                    "config": {"remote_folder": sftp_folder, "delimiter": delimiter},
                    "connections": {"partner_sftp": "fixco_sftp", "app_db": "fixco_db"},
                }
            },
        }
        include = write_include(
            tmp_path / "include",
            {"partner_orders_sftp": shipped_template("partner_orders_sftp")},
            {"fixco": customer},
        )
        monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        return bag.dags["fixco__partner_orders_sftp__orders"]

    monkeypatch.setenv("AIRFLOW_CONN_FIXCO_SFTP", sshd.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_CONN_FIXCO_DB", f"{PG}/{pg_db}")
    content = "order_id;order_date;sku;quantity;unit_price;status\nF-1;2025-03-01;SKU-9;2;9.90;new\n"
    Path(sftp_folder, "day1.csv").write_text(content)

    assert deploy(",").test().state == "failed"  # every row is one unreadable column
    assert Path(sftp_folder, "failed", "day1.csv").read_text() == content

    Path(sftp_folder, "day1.csv").write_text(content)  # sent again, unchanged, after the config fix
    assert deploy(";").test().state == "success"
    assert rows(pg_db, "SELECT order_id, quantity FROM partner_orders WHERE customer_id = 'fixco'") == [
        ("F-1", 2)
    ]
    assert Path(sftp_folder, "processed", "day1.csv").read_text() == content
    assert ledger_rows(pg_db, "fixco") == [("day1.csv", "loaded", 1)]


# A typical partner file: BOM, CRLF, ';' delimiter, day-first dates, decimal comma with thousands dots, and a
# quoted note holding the delimiter and a line break.
PARTNER_CSV = (
    "\ufefforder_id;order_date;quantity;amount;note\r\n"
    'P-1;03.12.2026;1.000;1.234,50;"gate 3; ramp\r\nleft"\r\n'
    "P-2;4.12.2026;2;12,5;\r\n"
    "P-3;2026-12-05;3;1,234.50;\r\n"
)
PARTNER_SCHEMA = {
    "decimal_separator": ",",
    "thousands_separator": ".",
    "fields": [
        {"name": "order_id", "type": "string", "required": True},
        {"name": "order_date", "type": "date", "required": True, "format": "%d.%m.%Y"},
        {"name": "quantity", "type": "integer", "required": True},
        {"name": "amount", "type": "number"},
        {"name": "note", "type": "string"},
    ],
}
PARTNER_COLUMNS = {
    "order_id": "VARCHAR(40)",
    "order_date": "DATE",
    "quantity": "INTEGER",
    "amount": "NUMERIC(12,2)",
    "note": "TEXT",
    "customer_id": "VARCHAR(60)",
    "source_file": "VARCHAR(255)",
}


@pytest.mark.parametrize("path", ["fast", "record"])
def test_a_partner_file_with_european_dates_and_numbers_loads(
    path: str, sftp_conn: str, sftp_folder: str, db_conn: str, pg_db: str
) -> None:
    from datetime import date
    from decimal import Decimal

    name = f"partner-{path}.csv"  # the ledger (one database per module) knows each name and content once
    Path(sftp_folder, name).write_bytes(PARTNER_CSV.encode("utf-8"))
    table = table_name()
    file_format: dict[str, Any] = {"format": "csv", "delimiter": ";"}
    if path == "record":
        file_format["skip_blank_lines"] = False  # an option the fast path does not take
    op = make_operator(
        sftp_conn,
        db_conn,
        sftp_folder,
        table,
        file_format=file_format,
        row_schema=PARTNER_SCHEMA,
        columns=PARTNER_COLUMNS,
        key=["customer_id", "order_id"],
    )
    result = op.execute({})  # type: ignore[arg-type]
    assert (result["rows_loaded"], result["rows_quarantined"]) == (2, 1)
    assert rows(pg_db, f"SELECT order_id, order_date, quantity, amount, note FROM {table} ORDER BY 1") == [
        ("P-1", date(2026, 12, 3), 1000, Decimal("1234.50"), "gate 3; ramp\r\nleft"),
        ("P-2", date(2026, 12, 4), 2, Decimal("12.50"), None),
    ]
    report = Path(sftp_folder, "quarantine", f"{name}.quarantine.csv").read_text(encoding="utf-8")
    assert f"{name},3," in report
    assert (
        "field 'order_date': expected date in the form '%d.%m.%Y' (e.g. 03.12.2026), got '2026-12-05'"
        in report
    )
    assert (
        "field 'amount': expected number with decimal separator ',' and thousands separator '.' "
        "(e.g. 1.234,5), got '1,234.50'" in report
    )
