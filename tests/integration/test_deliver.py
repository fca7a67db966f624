"""The deliver step against real servers: OpenSSH sshd, an aiosmtpd SMTP server, an HTTP sink standing in for
Slack and an upload API (uvicorn subprocess), and the delivery ledger in PostgreSQL (and SQLite)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from b2b_integrations.errors import RetriableStepError
from b2b_integrations.operators.deliver import DeliverOperator
from b2b_integrations.state import deliveries
from helpers import PG
from helpers import pg_rows as rows
from http_sink import HttpSink, body_bytes
from smtp_server import SmtpServer
from sshd import SshServer

CUSTOMER, INTEGRATION, FLOW = "acme", "monthly_reports", "invoices"
PERIOD = "2025-01-31"
UPLOAD_TOKEN = "upload-Bearer-Secret-991"
SUMMARY = {"Total revenue": 1234.5, "Invoices": 12}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def fresh(sink: HttpSink, smtp: SmtpServer, pg_db: str) -> None:
    """Nothing received, nothing recorded: each test starts from an empty sink, mailbox and ledger."""
    import psycopg2

    sink.reset()
    smtp.clear()
    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {deliveries.DELIVERY_TABLE}")


@pytest.fixture
def conns(
    sink: HttpSink, smtp: SmtpServer, sshd: SshServer, pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Airflow connections (env) for every target: name -> conn id."""
    host, port = sink.url.removeprefix("http://").split(":")
    definitions = {
        "deliver_db": f"{PG}/{pg_db}",
        "deliver_sftp": sshd.airflow_conn_json(),
        "deliver_smtp": smtp.airflow_conn_json(),
        "deliver_api": json.dumps(
            {"conn_type": "http", "host": host, "port": int(port), "password": UPLOAD_TOKEN}
        ),
        "deliver_slack_bot": json.dumps(
            {"conn_type": "generic", "host": f"{sink.url}/api", "password": sink.slack_token}
        ),
        "deliver_slack_hook": json.dumps({"conn_type": "generic", "password": sink.webhook_url}),
    }
    for conn_id, value in definitions.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
    return {name: name for name in definitions}


def make_report(folder: Path, content: bytes, name: str = "invoices-2025-01.pdf") -> dict[str, Any]:
    """A rendered report as the report_export step returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex[:8]}-{name}"
    path.write_bytes(content)
    return {
        "file": str(path), "name": name, "format": "pdf", "content_type": "application/pdf", "rows": 12,
        "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(), "report": "invoices",
        "period": PERIOD, "period_start": "2025-01-01T00:00:00+00:00", "period_end": "2025-02-01T00:00:00+00:00",
        "empty": False, "summary": SUMMARY,
    }  # fmt: skip


def pdf_bytes(size: int, seed: bytes = b"") -> bytes:
    return b"%PDF-1.7\n" + seed + os.urandom(size - 9 - len(seed))


def operator(targets: list[dict[str, Any]], report: dict[str, Any], **overrides: Any) -> DeliverOperator:
    return DeliverOperator(
        task_id="send",
        customer_id=CUSTOMER,
        integration=INTEGRATION,
        flow=FLOW,
        db_conn_id="deliver_db",
        targets=targets,
        report=report,
        **overrides,
    )


def run(targets: list[dict[str, Any]], report: dict[str, Any], **context: Any) -> dict[str, Any]:
    result: dict[str, Any] = operator(targets, report).execute(context)  # type: ignore[arg-type]
    return result


def ledger(pg_db: str) -> dict[str, tuple[Any, ...]]:
    """target -> (status, attempts, sends, last_error, receipt) of this customer's report."""
    found = rows(
        pg_db,
        f"SELECT target, status, attempts, sends, last_error, receipt FROM {deliveries.DELIVERY_TABLE} "
        f"WHERE customer_id = '{CUSTOMER}' AND report = 'invoices' AND period = '{PERIOD}'",
    )
    return {r[0]: (r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None) for r in found}


def sftp_target(folder: str, **options: Any) -> dict[str, Any]:
    return {"type": "sftp", "connection": "deliver_sftp", "folder": folder, **options}


EMAIL = {
    "type": "email",
    "connection": "deliver_smtp",
    "to": ["ap@customer.example"],
    "cc": "controller@customer.example",
    "subject": "{report} for {period} ({rows} rows)",
    "body": "Hello {customer},\nrevenue {summary.Total revenue}.\n\n{summary}",
}
HTTP_RAW = {
    "type": "http",
    "connection": "deliver_api",
    "endpoint": "/reports/{report}/{period}",
    "method": "PUT",
    "mode": "raw",
    "auth": {"type": "bearer"},
}
HTTP_MULTIPART = {
    "type": "http",
    "connection": "deliver_api",
    "endpoint": "/reports",
    "mode": "multipart",
    "field": "document",
    "form": {"period": "{period}", "customer": "{customer}"},
    "auth": {"type": "bearer"},
}


# -------------------------------------------------------------------------------------------------- SFTP


class FolderWatcher:
    """Polls a folder (the sshd root is local) and checks the final file every time it sees a new one."""

    def __init__(self, folder: Path, name: str, expected: dict[str, str]) -> None:
        self.folder, self.name, self.expected = folder, name, expected  # sha256 -> label
        self.partial_sightings: list[str] = []
        self.temporary_names: set[str] = set()
        self.complete_sightings: dict[str, int] = {}
        self._sizes: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def expect_sizes(self, *sizes: int) -> None:
        self._sizes = set(sizes)

    def __enter__(self) -> FolderWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait_to_see(self, label: str, timeout: float = 30.0) -> None:
        """Until the watcher has checked the final file with ``label``'s content (or the deadline)."""
        deadline = time.monotonic() + timeout
        while not self.complete_sightings.get(label) and time.monotonic() < deadline:
            time.sleep(0.01)

    def _watch(self) -> None:
        checked_inode = None
        while not self._stop.is_set():
            for entry in os.scandir(self.folder):
                if entry.name != self.name:
                    self.temporary_names.add(entry.name)
                    continue
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                if info.st_size not in self._sizes:
                    self.partial_sightings.append(f"{self.name} with {info.st_size} bytes")
                elif info.st_ino != checked_inode:
                    checked_inode = info.st_ino
                    digest = hashlib.sha256(Path(self.folder, self.name).read_bytes()).hexdigest()
                    label = self.expected.get(digest, "")
                    if not label:
                        self.partial_sightings.append(f"{self.name} with unexpected content")
                    self.complete_sightings[label] = self.complete_sightings.get(label, 0) + 1
            time.sleep(0.0005)


def test_sftp_upload_is_atomic_and_a_rerun_replaces_the_file(
    conns: dict[str, str], sftp_folder: str, tmp_path: Path, pg_db: str
) -> None:
    first = make_report(tmp_path / "first", pdf_bytes(40 * 1024 * 1024, b"first"))
    second = make_report(tmp_path / "second", pdf_bytes(40 * 1024 * 1024 + 7, b"second"))
    outbox = Path(sftp_folder, "outbox")
    outbox.mkdir()
    targets = [sftp_target(str(outbox))]
    watcher = FolderWatcher(outbox, first["name"], {first["sha256"]: "first", second["sha256"]: "second"})
    watcher.expect_sizes(first["bytes"], second["bytes"])
    with watcher:
        result = run(targets, first)
        temporary_during_first = set(watcher.temporary_names)
        forced = run(targets, second, params={"force_resend": True})  # a re-run: same name, new content
        watcher.wait_to_see("second")  # the final file is in place: the watcher's next pass checks it
    assert result["sent"] == 1 and forced["sent"] == 1
    assert watcher.partial_sightings == []
    assert (
        watcher.complete_sightings.get("first", 0) >= 1 and watcher.complete_sightings.get("second", 0) >= 1
    )
    # The upload went through a hidden temporary name the watcher saw while it grew, once per run.
    assert temporary_during_first and all(
        n.startswith(f".{first['name']}.part-") for n in watcher.temporary_names
    )
    assert len(watcher.temporary_names) == 2
    assert [p.name for p in outbox.iterdir()] == [first["name"]]
    assert hashlib.sha256((outbox / first["name"]).read_bytes()).hexdigest() == second["sha256"]
    status, attempts, sends, _, receipt = ledger(pg_db)["sftp"]
    assert (status, attempts, sends) == ("delivered", 2, 2)
    assert receipt == {"path": str(outbox / first["name"]), "bytes": second["bytes"], "host": "127.0.0.1"}


def test_a_connection_dropped_mid_upload_fails_the_target_and_the_retry_delivers_once(
    conns: dict[str, str], sshd: SshServer, sftp_folder: str, tmp_path: Path, pg_db: str
) -> None:
    report = make_report(tmp_path, pdf_bytes(40 * 1024 * 1024))
    folder = Path(sftp_folder)
    killed = threading.Event()

    def kill_when_the_upload_starts() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(p.name.startswith(".") for p in folder.iterdir()):
            time.sleep(0.0005)
        if sshd.kill_sessions():
            killed.set()

    killer = threading.Thread(target=kill_when_the_upload_starts, daemon=True)
    killer.start()
    with pytest.raises(RetriableStepError, match=r"1 of 1 target\(s\) failed: sftp: "):
        run([sftp_target(sftp_folder)], report)
    killer.join()
    assert killed.is_set()
    assert not (folder / report["name"]).exists()
    assert ledger(pg_db)["sftp"][:3] == ("failed", 1, 0)

    assert run([sftp_target(sftp_folder)], report)["sent"] == 1
    assert hashlib.sha256((folder / report["name"]).read_bytes()).hexdigest() == report["sha256"]
    assert ledger(pg_db)["sftp"][:3] == ("delivered", 2, 1)


def test_sftp_missing_folder_is_refused_unless_it_may_be_created(
    conns: dict[str, str], sftp_folder: str, tmp_path: Path, pg_db: str
) -> None:
    report = make_report(tmp_path, pdf_bytes(2000), name="r.pdf")
    with pytest.raises(AirflowFailException) as caught:
        run([sftp_target(f"{sftp_folder}/missing")], report)
    assert f"folder {sftp_folder}/missing does not exist on the server (set create_folder: true" in str(
        caught.value
    )
    assert ledger(pg_db)["sftp"][:3] == ("failed", 1, 0)
    run(
        [sftp_target(f"{sftp_folder}/a/b/{{period}}", create_folder=True, file_name="{customer}_{name}")],
        report,
    )
    assert Path(sftp_folder, "a", "b", PERIOD, "acme_r.pdf").read_bytes() == Path(report["file"]).read_bytes()


# ------------------------------------------------------------------------------------------------- email


def test_email_arrives_with_the_attachment_byte_identical(
    conns: dict[str, str], smtp: SmtpServer, tmp_path: Path, pg_db: str
) -> None:
    content = pdf_bytes(300_000)
    report = make_report(tmp_path, content)
    result = run([{**EMAIL, "file_name": "{customer}_{report}_{period}.pdf"}], report)
    (mail,) = smtp.messages
    message = mail.message
    assert message["Subject"] == f"invoices for {PERIOD} (12 rows)"
    assert message["From"] == "reports@b2b.example" and mail.mail_from == "reports@b2b.example"
    assert sorted(mail.rcpt_tos) == ["ap@customer.example", "controller@customer.example"]
    assert mail.attachments() == {f"acme_invoices_{PERIOD}.pdf": content}
    body = message.get_body(("html", "plain"))
    assert body is not None and "revenue 1234.5." in body.get_content()
    assert "Invoices: 12" in body.get_content()
    receipt = result["targets"][0]["receipt"]
    assert message["Message-ID"] == receipt["message_id"]
    assert receipt["message_id"].startswith("<b2b.") and receipt["message_id"].endswith("@b2b.example>")
    assert ledger(pg_db)["email"][4] == receipt


def test_an_attachment_over_the_limit_is_refused_before_sending(
    conns: dict[str, str], smtp: SmtpServer, tmp_path: Path
) -> None:
    report = make_report(tmp_path, pdf_bytes(1_200_000))
    with pytest.raises(AirflowFailException, match=r"over max_attachment_mb \(1 MB\)"):
        run([{**EMAIL, "max_attachment_mb": 1}], report)
    assert smtp.messages == []


# ------------------------------------------------------------------------------------------------- Slack


def test_slack_upload_makes_the_three_calls_in_order_with_the_token(
    conns: dict[str, str], sink: HttpSink, tmp_path: Path, pg_db: str
) -> None:
    content = pdf_bytes(500_000)
    report = make_report(tmp_path, content)
    target = {"type": "slack", "connection": "deliver_slack_bot", "mode": "upload", "channel": "C0REPORTS",
              "text": "{report} for {period}: revenue {summary.Total revenue}"}  # fmt: skip
    result = run([target], report)
    calls = sink.requests()
    # The sink numbers uploads per server, which other tests may have used first: take the id it gave.
    file_id = calls[1]["path"].rsplit("/", 1)[-1]
    assert file_id.startswith("F")
    assert [(c["kind"], c["path"].rsplit("/", 1)[-1]) for c in calls] == [
        ("slack_api", "files.getUploadURLExternal"),
        ("slack_upload", file_id),
        ("slack_api", "files.completeUploadExternal"),
    ]
    assert {calls[0]["headers"]["authorization"], calls[2]["headers"]["authorization"]} == {
        f"Bearer {sink.slack_token}"
    }
    assert calls[0]["form"] == {"filename": report["name"], "length": str(len(content))}
    assert body_bytes(calls[1]) == content
    assert calls[2]["form"]["channel_id"] == "C0REPORTS"
    assert calls[2]["form"]["initial_comment"] == f"invoices for {PERIOD}: revenue 1234.5"
    assert json.loads(calls[2]["form"]["files"]) == [{"id": file_id, "title": report["name"]}]
    assert sink.slack_files()[file_id]["completed"] is True
    assert result["targets"][0]["receipt"] == {
        "mode": "upload", "file_id": file_id, "channel": "C0REPORTS", "title": report["name"]
    }  # fmt: skip
    assert ledger(pg_db)["slack"][0] == "delivered"


def test_slack_webhook_posts_the_summary_and_the_link(
    conns: dict[str, str], sink: HttpSink, tmp_path: Path
) -> None:
    report = make_report(tmp_path, pdf_bytes(1000))
    target = {"type": "slack", "connection": "deliver_slack_hook", "mode": "webhook",
              "text": "{report} for {period} is out ({rows} rows)\n{summary}",
              "link": "https://portal.example/{customer}/{period}"}  # fmt: skip
    run([target], report)
    (call,) = sink.requests("webhook")
    assert call["status"] == 200
    assert call["json"] == {
        "text": f"invoices for {PERIOD} is out (12 rows)\nTotal revenue: 1234.5\nInvoices: 12\n"
        f"https://portal.example/acme/{PERIOD}"
    }


def test_slack_ok_false_fails_the_target_with_slacks_error(
    conns: dict[str, str], sink: HttpSink, tmp_path: Path, pg_db: str
) -> None:
    report = make_report(tmp_path, pdf_bytes(1000))
    target = {"type": "slack", "connection": "deliver_slack_bot", "mode": "upload", "channel": "CMISSING"}
    with pytest.raises(AirflowFailException) as caught:
        run([target], report)
    assert "failed: slack: files.completeUploadExternal failed: channel_not_found" in str(caught.value)
    assert ledger(pg_db)["slack"][:4] == (
        "failed",
        1,
        0,
        "files.completeUploadExternal failed: channel_not_found",
    )


# -------------------------------------------------------------------------------------------------- HTTP


def test_http_multipart_and_raw_put_arrive_byte_identical_with_an_idempotency_key(
    conns: dict[str, str], sink: HttpSink, tmp_path: Path, pg_db: str
) -> None:
    content = pdf_bytes(2_000_000)
    report = make_report(tmp_path, content)
    result = run([HTTP_MULTIPART, HTTP_RAW], report)
    multipart, raw = sink.uploads()
    assert (multipart["method"], multipart["path"]) == ("POST", "/reports")
    assert multipart["files"]["document"]["filename"] == report["name"]
    assert multipart["files"]["document"]["content_type"] == "application/pdf"
    assert body_bytes(multipart["files"]["document"]) == content
    assert multipart["form"] == {"period": PERIOD, "customer": CUSTOMER}
    assert (raw["method"], raw["path"]) == ("PUT", f"/reports/invoices/{PERIOD}")
    assert raw["headers"]["content-type"] == "application/pdf"
    assert body_bytes(raw) == content
    for call in (multipart, raw):
        assert call["headers"]["authorization"] == f"Bearer {UPLOAD_TOKEN}"
    keys = [call["headers"]["idempotency-key"] for call in (multipart, raw)]
    assert keys[0] != keys[1]
    assert [t["receipt"]["idempotency_key"] for t in result["targets"]] == keys
    assert [t["name"] for t in result["targets"]] == ["http", "http_2"]
    assert result["targets"][1]["receipt"]["location"] == f"/files/{raw['upload_id']}"
    assert {name: row[0] for name, row in ledger(pg_db).items()} == {
        "http": "delivered",
        "http_2": "delivered",
    }


# ------------------------------------------------------------------------------------ retries and the ledger


def test_a_retry_after_a_failed_target_sends_each_target_exactly_once(
    conns: dict[str, str], sink: HttpSink, smtp: SmtpServer, sftp_folder: str, tmp_path: Path, pg_db: str
) -> None:
    content = pdf_bytes(100_000)
    report = make_report(tmp_path, content)
    targets = [sftp_target(sftp_folder), EMAIL, HTTP_RAW]
    sink.fail_next(1, status=500, path_prefix="/reports")

    with pytest.raises(RetriableStepError) as caught:
        run(targets, report)
    message = str(caught.value)
    assert message.startswith(f"customer {CUSTOMER}, integration {INTEGRATION}, flow {FLOW}, step send: ")
    assert (
        f"report invoices for period {PERIOD} ({report['name']}): 1 of 3 target(s) failed: http: " in message
    )
    assert (
        f"PUT http://{sink.url.removeprefix('http://')}/reports/invoices/{PERIOD} answered HTTP 500"
        in message
    )
    assert "sftp" not in message.split("failed:", 1)[1] and "email" not in message.split("failed:", 1)[1]
    state = ledger(pg_db)
    assert {name: row[:3] for name, row in state.items()} == {
        "sftp": ("delivered", 1, 1), "email": ("delivered", 1, 1), "http": ("failed", 1, 0)
    }  # fmt: skip
    assert "HTTP 500" in state["http"][3]
    assert len(smtp.messages) == 1 and sink.uploads() == []

    retry = run(targets, report)  # Airflow's retry of the task
    assert (retry["sent"], retry["skipped"], retry["failed"]) == (1, 2, 0)
    assert len(smtp.messages) == 1
    (upload,) = sink.uploads()
    assert body_bytes(upload) == content
    assert ledger(pg_db)["http"][:4] == ("delivered", 2, 1, None)

    third = run(targets, report)  # a later re-run of the same period sends nothing
    assert (third["sent"], third["skipped"]) == (0, 3)
    assert [t["receipt"] for t in third["targets"]] == [t["receipt"] for t in retry["targets"]]
    assert len(smtp.messages) == 1 and len(sink.uploads()) == 1
    assert (
        len([r for r in sink.requests() if r["path"].startswith("/reports")]) == 2
    )  # the failed try, the upload

    forced = run(targets, report, params={"force_resend": True})
    assert forced["sent"] == 3
    first_mail, second_mail = smtp.messages
    assert first_mail.message["Message-ID"] != second_mail.message["Message-ID"]
    first_upload, second_upload = sink.uploads()
    assert first_upload["headers"]["idempotency-key"] != second_upload["headers"]["idempotency-key"]
    assert {name: row[2] for name, row in ledger(pg_db).items()} == {"sftp": 2, "email": 2, "http": 2}
    assert os.listdir(sftp_folder) == [report["name"]]


def test_force_resend_comes_from_the_argument_params_or_the_run_conf(
    conns: dict[str, str], sink: HttpSink, tmp_path: Path, pg_db: str
) -> None:
    class DagRun:
        conf = {"force_resend": True}

    report = make_report(tmp_path, pdf_bytes(1000))
    assert run([HTTP_RAW], report)["sent"] == 1
    assert run([HTTP_RAW], report, params={"force_resend": False})["sent"] == 0
    assert operator([HTTP_RAW], report, force=True).execute({})["sent"] == 1  # type: ignore[arg-type]
    assert operator([HTTP_RAW], report, force="False").execute({})["sent"] == 0  # type: ignore[arg-type]
    assert run([HTTP_RAW], report, dag_run=DagRun())["sent"] == 1
    assert len(sink.uploads()) == 3 and ledger(pg_db)["http"][2] == 3


def test_a_send_not_recorded_before_a_crash_is_sent_again_with_the_same_ids(
    conns: dict[str, str], sink: HttpSink, smtp: SmtpServer, tmp_path: Path, pg_db: str
) -> None:
    """The documented limit: a crash between the send and the ledger commit sends again on the retry, with
    the same Idempotency-Key and Message-ID, so receivers that honour them keep one copy."""
    import psycopg2

    report = make_report(tmp_path, pdf_bytes(5000))
    first = run([EMAIL, HTTP_RAW], report)
    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {deliveries.DELIVERY_TABLE}")  # as if the process died before recording
    again = run([EMAIL, HTTP_RAW], report)
    assert again["sent"] == 2
    assert [t["receipt"]["message_id"] for t in (first["targets"][0], again["targets"][0])] == [
        m.message["Message-ID"] for m in smtp.messages
    ]
    assert smtp.messages[0].message["Message-ID"] == smtp.messages[1].message["Message-ID"]
    first_try, replay = sink.requests("upload")
    assert first_try["headers"]["idempotency-key"] == replay["headers"]["idempotency-key"]
    assert replay["replayed"] is True and len(sink.uploads()) == 1


def test_a_changed_report_for_a_delivered_period_is_skipped_and_says_how_to_resend(
    conns: dict[str, str], sink: HttpSink, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run([HTTP_RAW], make_report(tmp_path / "a", pdf_bytes(1000)))
    corrected = make_report(tmp_path / "b", pdf_bytes(1000))
    capfd.readouterr()
    assert run([HTTP_RAW], corrected)["skipped"] == 1
    logged = capfd.readouterr().out  # the task logger writes to stdout here
    assert "target 1/1 http: already delivered at " in logged
    assert (
        "the report's content changed since" in logged and "force a resend to send the new version" in logged
    )
    assert len(sink.uploads()) == 1


def test_a_report_file_that_changed_since_rendering_is_refused(
    conns: dict[str, str], sink: HttpSink, tmp_path: Path
) -> None:
    report = make_report(tmp_path, pdf_bytes(1000))
    Path(report["file"]).write_bytes(pdf_bytes(1000))
    with pytest.raises(AirflowFailException, match="changed since the report step wrote it"):
        run([HTTP_RAW], report)
    assert sink.requests() == []


# ---------------------------------------------------------------------------------------------- secrets


def test_errors_never_contain_passwords_tokens_or_webhook_urls(
    conns: dict[str, str],
    sink: HttpSink,
    smtp: SmtpServer,
    tmp_path: Path,
    pg_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    wrong_password, wrong_token = "Wrong-Smtp-Pass-5521", "xoxb-wrong-Token-8812"
    secret_hook = f"{sink.url}/hooks/T0001/B0001/notTheRightSecret9"
    monkeypatch.setenv("AIRFLOW_CONN_BAD_SMTP", smtp.airflow_conn_json(password=wrong_password))
    monkeypatch.setenv("AIRFLOW_CONN_BAD_BOT", json.dumps({"conn_type": "generic", "host": f"{sink.url}/api",
                                                           "password": wrong_token}))  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_BAD_HOOK", json.dumps({"conn_type": "generic", "password": secret_hook}))
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_HOOK", json.dumps({"conn_type": "generic",
                                                             "password": "http://127.0.0.1:9/hooks/T/B/deadSecret4"}))  # fmt: skip
    sink.require_upload_auth("Bearer the-right-token")  # and it echoes the header it got in its 401
    report = make_report(tmp_path, pdf_bytes(1000))
    targets = [
        {**EMAIL, "connection": "bad_smtp"},
        {"type": "slack", "connection": "bad_bot", "mode": "upload", "channel": "C0REPORTS"},
        {"type": "slack", "connection": "bad_hook", "mode": "webhook"},
        {"type": "slack", "connection": "dead_hook", "mode": "webhook", "timeout": 5},
        HTTP_RAW,
    ]
    with pytest.raises(RetriableStepError) as caught:
        run(targets, report)
    message = str(caught.value)
    assert "5 of 5 target(s) failed" in message
    assert "SMTPAuthenticationError" in message and "invalid_auth" in message
    assert "slack_2 (slack): the incoming webhook answered HTTP 404: no_service" in message
    assert "slack_3 (slack): the incoming webhook: ConnectionError" in message
    assert "HTTP 401: invalid credentials: got Authorization: Bearer ***" in message
    recorded = " ".join(str(row[3]) for row in ledger(pg_db).values())
    logged = capfd.readouterr().out
    assert "target 5/5 http: failed: PUT" in logged
    for secret in (wrong_password, wrong_token, "notTheRightSecret9", "deadSecret4", UPLOAD_TOKEN):
        assert secret not in message
        assert secret not in recorded
        assert secret not in logged


# -------------------------------------------------------------------------------------- local and SQLite


def test_local_target_copies_through_object_storage_and_replaces_on_rerun(
    conns: dict[str, str], tmp_path: Path
) -> None:
    first, second = pdf_bytes(3_000_000), pdf_bytes(3_000_100)
    exports = tmp_path / "exports"
    target = {"type": "local", "path": f"file://{exports}/{{customer}}", "create_folder": True}
    result = run([target], make_report(tmp_path / "a", first))
    assert result["targets"][0]["receipt"] == {
        "path": f"file://{exports}/acme/invoices-2025-01.pdf", "bytes": len(first)
    }  # fmt: skip
    run([target], make_report(tmp_path / "b", second), params={"force_resend": True})
    assert [p.name for p in (exports / "acme").iterdir()] == ["invoices-2025-01.pdf"]
    assert (exports / "acme" / "invoices-2025-01.pdf").read_bytes() == second
    with pytest.raises(AirflowFailException, match=r"folder .*/nowhere does not exist \(set create_folder"):
        run(
            [{"type": "local", "name": "elsewhere", "path": str(tmp_path / "nowhere")}],
            make_report(tmp_path, first),
        )


def test_the_ledger_works_on_sqlite(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "app.db")
    key = deliveries.DeliveryKey(CUSTOMER, INTEGRATION, "invoices", PERIOD, "sftp")
    deliveries.ensure_table(conn)
    deliveries.ensure_table(conn)  # idempotent
    assert deliveries.lookup(conn, "?", key) is None
    deliveries.record_failed(conn, "?", key, target_type="sftp", flow=FLOW, error="timeout")
    failed = deliveries.lookup(conn, "?", key)
    assert (
        failed is not None and not failed.delivered and (failed.attempts, failed.last_error) == (1, "timeout")
    )
    receipt = {"path": "/outbox/r.pdf", "bytes": 10}
    for _ in range(2):
        deliveries.record_delivered(conn, "?", key, target_type="sftp", flow=FLOW, file_name="r.pdf",
                                    sha256="a" * 64, size_bytes=10, receipt=receipt)  # fmt: skip
    deliveries.record_failed(
        conn, "?", key, target_type="sftp", flow=FLOW, error="refused"
    )  # a failed resend
    done = deliveries.lookup(conn, "?", key)
    assert done is not None and done.delivered and done.status == "delivered"
    assert (done.attempts, done.sends, done.receipt, done.last_error) == (4, 2, receipt, "refused")
    other = deliveries.DeliveryKey(CUSTOMER, INTEGRATION, "invoices", "2025-02-28", "sftp")
    assert deliveries.lookup(conn, "?", other) is None
    conn.close()


# ------------------------------------------------------------------------------------------ a real DAG run


DAG_FILE = """
import json
import os

from airflow.sdk import DAG, task

from b2b_integrations.operators.deliver import DeliverOperator

spec = json.loads(os.environ["B2B_DELIVER_E2E"])
with DAG(dag_id=spec["dag_id"], schedule=None, catchup=False) as dag:

    @task(task_id="render")
    def render():
        return spec["report"]

    send = DeliverOperator(
        task_id="send", customer_id=spec["customer"], integration=spec["integration"], flow=spec["flow"],
        input_task_id="render", db_conn_id="deliver_db", targets=spec["targets"],
    )
    render() >> send
"""


@pytest.mark.e2e
def test_a_dag_run_delivers_the_upstream_report_once_and_force_resend_sends_again(
    airflow_db: str,
    conns: dict[str, str],
    sink: HttpSink,
    tmp_path: Path,
    pg_db: str,
    sftp_folder: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The report comes through XCom from the upstream task; force_resend from the run's conf."""
    from airflow.dag_processing.dagbag import DagBag

    content = pdf_bytes(50_000)
    report = make_report(tmp_path / "reports", content)
    dag_id = f"deliver_e2e_{uuid.uuid4().hex[:6]}"
    targets = [HTTP_RAW, {"type": "local", "path": str(tmp_path / "out"), "create_folder": True},
               sftp_target(sftp_folder)]  # fmt: skip
    spec = {"dag_id": dag_id, "report": report, "targets": targets, "customer": CUSTOMER,
            "integration": INTEGRATION, "flow": FLOW}  # fmt: skip
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "deliver_e2e.py").write_text(DAG_FILE)
    monkeypatch.setenv("B2B_DELIVER_E2E", json.dumps(spec))
    # dag.test() runs DAGs from a bundle: make this folder the only one for the test.
    bundle = {"name": "deliver-e2e", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
              "kwargs": {"path": str(dags), "refresh_interval": 0}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {}
    dag = bag.dags[dag_id]

    first = dag.test()
    assert first.state == "success"
    send = next(ti for ti in first.get_task_instances() if ti.task_id == "send")
    sent = send.xcom_pull(task_ids="send")
    assert (sent["sent"], sent["skipped"]) == (3, 0)
    assert dag.test().state == "success"  # the same period again: nothing is sent
    assert len(sink.uploads()) == 1 and body_bytes(sink.uploads()[0]) == content
    assert dag.test(run_conf={"force_resend": True}).state == "success"
    assert len(sink.uploads()) == 2
    assert (tmp_path / "out" / report["name"]).read_bytes() == content
    assert Path(sftp_folder, report["name"]).read_bytes() == content
    assert {name: row[:3] for name, row in ledger(pg_db).items()} == {
        "http": ("delivered", 2, 2), "local": ("delivered", 2, 2), "sftp": ("delivered", 2, 2)
    }  # fmt: skip
