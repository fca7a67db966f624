"""Email as a source, through a generated DAG (dag.test) against a real Dovecot IMAP server: messages become
rows, attachments become files, read messages move to the processed folder, and a message whose Message-ID
was processed before (a sender's resend) is not loaded again."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from helpers import PG, pg_rows, write_include
from imap_server import ImapServer, start_imap

pytestmark = pytest.mark.e2e

CSV = "sku;qty\nA-1;5\nB-2;7\n"


def mail(
    message_id: str | None, subject: str, body: str, attachments: dict[str, bytes] | None = None
) -> bytes:
    message = EmailMessage()
    message["From"] = "Orders <orders@partner.example>"
    message["To"] = "inbox@us.example"
    message["Subject"] = subject
    message["Date"] = "Tue, 01 Dec 2026 10:00:00 +0100"
    if message_id:
        message["Message-ID"] = message_id
    message.set_content(body)
    for name, data in (attachments or {}).items():
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return bytes(message)


@pytest.fixture(scope="module")
def imap() -> Iterator[ImapServer]:
    server = start_imap()
    try:
        yield server
    finally:
        server.stop()


def template(emit: str, table: str, key: str) -> dict:
    return {
        "name": "mail_orders",
        "connections": {"mailbox": {"type": "imap"}, "app_db": {"type": "postgres"}},
        "defaults": {"retries": 0},
        "flows": {
            "inbox": {
                "trigger": {"type": "manual"},
                "steps": [
                    {
                        "id": "read_mail",
                        "kind": "mailbox",
                        "connection": "mailbox",
                        "folder": "INBOX",
                        "processed_folder": "Processed",
                        "emit": emit,
                        "attachment_pattern": "*.csv",
                    },
                    {
                        "id": "pick",
                        "kind": "transform",
                        "callable": "b2b_integrations.transforms.common.select_columns",
                        "options": {"columns": [key, "subject", "sender", "sent_at"]},
                    },
                    {"id": "load", "kind": "load", "connection": "app_db", "table": table, "key": [key]},
                ],
            }
        },
    }


def run_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, imap: ImapServer, pg_db: str, emit: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    table, key = ("mail_messages", "message_id") if emit == "messages" else ("mail_attachments", "sha256")
    customer = {
        "id": "mailco",
        "name": "Mail Co",
        "integrations": {"mail_orders": {"connections": {"mailbox": "mailco_imap", "app_db": "mailco_db"}}},
    }
    include = write_include(
        tmp_path / "include", {"mail_orders": template(emit, table, key)}, {"mailco": customer}
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_MAILCO_IMAP", imap.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_CONN_MAILCO_DB", f"{PG}/{pg_db}")
    bag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags"))
    assert bag.import_errors == {}
    run = bag.dags["mailco__mail_orders__inbox"].test()
    assert run.state == "success"


def test_messages_become_rows_move_to_processed_and_a_resend_is_not_loaded_twice(
    airflow_db: str, pg_db: str, imap: ImapServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with __import__("psycopg2").connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE mail_messages (message_id TEXT PRIMARY KEY, subject TEXT, sender TEXT, sent_at TEXT)"
        )
    processed_before = len(imap.message_ids("Processed"))  # the module's mailbox: other tests may have run
    imap.append(mail("<po-1@partner.example>", "PO 1", "first order"))
    imap.append(mail("<po-2@partner.example>", "Bestellung Nr. 2 – Größe M", "zweite"))
    imap.append(mail(None, "no id", "a message without Message-ID"))
    imap.append(mail('<"q"@partner.example>', "quoted id", "an id that cannot go in an IMAP quoted string"))
    run_flow(tmp_path / "a", monkeypatch, imap, pg_db, "messages")

    loaded = pg_rows(pg_db, "SELECT message_id, subject, sender, sent_at FROM mail_messages ORDER BY subject")
    assert [r[:3] for r in loaded if not r[0].startswith("sha256:")] == [
        ("po-2@partner.example", "Bestellung Nr. 2 – Größe M", "orders@partner.example"),
        ("po-1@partner.example", "PO 1", "orders@partner.example"),
        ('"q"@partner.example', "quoted id", "orders@partner.example"),
    ]
    assert loaded[0][3] == "2026-12-01T09:00:00+00:00"  # the Date header, in UTC
    assert sum(r[0].startswith("sha256:") for r in loaded) == 1
    assert imap.message_ids("INBOX") == []
    assert len(imap.message_ids("Processed")) == processed_before + 4

    # The partner's system sends PO 1 and the odd one again (same Message-IDs, new subjects), and a new
    # order arrives.
    imap.append(mail("<po-1@partner.example>", "PO 1 (resent)", "first order"))
    imap.append(mail('<"q"@partner.example>', "quoted id (resent)", "again"))
    imap.append(mail("<po-3@partner.example>", "PO 3", "third"))
    run_flow(tmp_path / "b", monkeypatch, imap, pg_db, "messages")
    subjects = dict(pg_rows(pg_db, "SELECT message_id, subject FROM mail_messages"))
    assert subjects["po-1@partner.example"] == "PO 1"  # the resend was not loaded again
    assert subjects["po-3@partner.example"] == "PO 3"
    assert subjects['"q"@partner.example'] == "quoted id"
    assert len(subjects) == 5
    assert imap.message_ids("INBOX") == []
    assert sorted(imap.message_ids("Processed")).count("<po-1@partner.example>") == 2


def test_attachments_become_files_that_the_file_readers_can_read(
    airflow_db: str, pg_db: str, imap: ImapServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with __import__("psycopg2").connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE mail_attachments (sha256 TEXT PRIMARY KEY, subject TEXT, sender TEXT, sent_at TEXT)"
        )
    monkeypatch.setenv("B2B_DATA_DIR", str(tmp_path / "data"))
    imap.append(
        mail(
            "<stock-1@partner.example>",
            "stock",
            "see attached",
            {"../../etc/stock.csv": CSV.encode(), "logo.png": b"\x89PNG..."},
        )
    )
    run_flow(tmp_path, monkeypatch, imap, pg_db, "attachments")
    assert pg_rows(pg_db, "SELECT subject FROM mail_attachments") == [("stock",)]
    (staged,) = (tmp_path / "data").rglob("read_mail.ndjson")
    (record,) = [json.loads(line) for line in staged.read_text().splitlines()]
    path = Path(record["path"])
    # The sender's name is data: the file lies in the run's attachment folder under a cleaned name.
    assert (
        path.parent.parent == staged.with_name("read_mail.attachments") and path.name == "000-etc_stock.csv"
    )
    assert record["attachment_name"] == "../../etc/stock.csv" and record["size"] == len(CSV)
    from b2b_integrations.formats.readers import options_from_dict, read_records

    rows = list(read_records(path, options_from_dict({"format": "csv", "delimiter": ";"})))
    assert [r.fields for r in rows] == list(csv.DictReader(CSV.splitlines(), delimiter=";"))
    assert os.path.getsize(path) == len(CSV)


def test_a_refused_login_fails_without_retries_naming_the_flow_and_mailbox_never_the_password(
    imap: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from b2b_integrations.operators.mailbox import MailboxOperator

    wrong = json.loads(imap.airflow_conn_json()) | {"password": "Wr0ng-imap-pass"}
    monkeypatch.setenv("AIRFLOW_CONN_MAILCO_BAD", json.dumps(wrong))
    operator = MailboxOperator(
        task_id="read_mail",
        customer_id="mailco",
        integration="mail_orders",
        flow="inbox",
        imap_conn_id="mailco_bad",
    )
    with pytest.raises(AirflowFailException) as error:
        operator.execute({"run_id": "manual__bad_login"})
    text = str(error.value)
    assert text.startswith(
        "customer mailco, integration mail_orders, flow inbox, step read_mail: mailbox mailco_bad"
    )
    assert "login refused" in text and "Wr0ng-imap-pass" not in text
