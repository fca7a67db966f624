"""http_import end to end: the operator against the real demo CRM (uvicorn subprocess) into PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from b2b_integrations.config.sql_target import with_target
from b2b_integrations.operators.http_import import HttpApiImportOperator
from crm_server import CrmServer, start_crm_server
from helpers import PG, REPO
from helpers import pg_rows as rows

CONTACTS = 250
SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer", "required": True},
        {"name": "first_name", "type": "string"},
        {"name": "last_name", "type": "string"},
        {"name": "email", "type": "string"},
        {"name": "updated_at", "type": "datetime", "required": True},
    ]
}
COLUMNS = {
    "customer_id": "VARCHAR(60)",
    "id": "BIGINT",
    "first_name": "VARCHAR(100)",
    "last_name": "VARCHAR(100)",
    "email": "VARCHAR(200)",
    "updated_at": "TIMESTAMPTZ",
}
STYLES = {
    "page_number": ("/api/page/contacts", "data.items", {"style": "page_number", "page_size": 40}),
    "offset": ("/api/offset/contacts", "items", {"style": "offset", "limit": 40, "total_path": "total"}),
    "cursor": ("/api/cursor/contacts", "results", {"style": "cursor", "limit": 40}),
    "next_url": ("/api/next/contacts", "records", {"style": "next_url", "next_url_path": "links.next", "limit_param": "limit", "limit": 40}),
    "link_header": ("/api/link/contacts", None, {"style": "link_header", "size_param": "per_page", "page_size": 40}),
}  # fmt: skip


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    server = start_crm_server(contacts=CONTACTS, access_log=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def fresh_state(crm: CrmServer, pg_db: str) -> None:
    """Seeded CRM data, and no cursor or quarantine left by an earlier test (each test has its own table)."""
    import psycopg2

    crm.reset()
    with psycopg2.connect(f"{PG}/{pg_db}") as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS b2b_sync_cursors, b2b_quarantine")


@pytest.fixture
def api_conn(crm: CrmServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """An HTTP connection to the CRM whose login/password are the OAuth client id and secret."""
    conn_id = f"crm_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", _conn_json(crm, crm.client_id, crm.client_secret))
    return conn_id


@pytest.fixture
def db_conn(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_HTTP_APP_DB", f"{PG}/{pg_db}")
    return "http_app_db"


def _conn_json(crm: CrmServer, login: str, password: str) -> str:
    return json.dumps(
        {"conn_type": "http", "host": crm.host, "port": crm.port, "login": login, "password": password}
    )


def _table() -> str:
    return f"contacts_{uuid.uuid4().hex[:8]}"


def _operator(api_conn: str, table: str, style: str = "cursor", **overrides: Any) -> HttpApiImportOperator:
    endpoint, records_path, pagination = STYLES[style]
    arguments: dict[str, Any] = {
        "task_id": "import_contacts",
        "customer_id": "acme",
        "integration": "crm_contacts",
        "flow": "contacts",
        "http_conn_id": api_conn,
        "endpoint": endpoint,
        "records_path": records_path,
        "pagination": pagination,
        "auth": {"type": "oauth2_client_credentials", "token_url": "/oauth/token"},
        "incremental": {"cursor_field": "updated_at", "param": "updated_since"},
        "row_schema": SCHEMA,
        "db_conn_id": "http_app_db",
        "table": table,
        "key": ["customer_id", "id"],
        "constants": {"customer_id": "acme"},
        "columns": COLUMNS,
        "create_table": True,
        "retry_base_seconds": 0.05,
        **overrides,
    }
    return HttpApiImportOperator(**with_target(arguments))


# A first import into a fresh table writes into one without a key, so a record written twice (a page
# fetched again after a retry, an overlapping page) is two rows; with the upsert by key the two counts of
# _loaded would be equal whatever happened.
KEYLESS: dict[str, Any] = {"mode": "insert", "key": ()}


def _loaded(pg_db: str, table: str) -> tuple[int, int]:
    """(rows, distinct ids) in ``table``: both equal the CRM's count when each record was written once."""
    return rows(pg_db, f"SELECT count(*), count(DISTINCT id) FROM {table}")[0]


def _served(crm: CrmServer) -> int:
    """Records the CRM has put in whole pages since its stats were reset."""
    return crm.admin_get("stats")["records_served"]


def _cursor(pg_db: str, table_step: str = "import_contacts") -> str | None:
    found = rows(
        pg_db,
        f"SELECT cursor_value FROM b2b_sync_cursors WHERE step_id = '{table_step}' AND customer_id = 'acme'",
    )
    return found[0][0] if found else None


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_pagination_style_loads_every_record_once(
    style: str, crm: CrmServer, api_conn: str, db_conn: str, pg_db: str
) -> None:
    table = _table()
    result = _operator(api_conn, table, style, incremental=None, **KEYLESS).execute({})  # type: ignore[arg-type]
    assert _loaded(pg_db, table) == (CONTACTS, CONTACTS)
    assert result["records_loaded"] == CONTACTS
    assert result["pages"] >= CONTACTS // 40
    api_newest = max(
        c["updated_at"] for c in crm.api("GET", "/api/offset/contacts?limit=1000").json()["items"]
    )
    assert rows(
        pg_db,
        f"SELECT to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM {table}",
    ) == [(api_newest,)]


def test_incremental_second_run_fetches_only_changes(
    crm: CrmServer, api_conn: str, db_conn: str, pg_db: str
) -> None:
    table = _table()
    first = _operator(api_conn, table).execute({})  # type: ignore[arg-type]
    assert first["records_fetched"] == CONTACTS
    cursor = _cursor(pg_db)
    assert cursor == first["cursor"]
    # Records at the cursor itself come again (the API filters with >=): count them first.
    at_cursor = len(
        crm.api("GET", "/api/offset/contacts", params={"updated_since": cursor, "limit": 1000}).json()[
            "items"
        ]
    )
    for contact_id in (3, 77, 150):
        assert (
            crm.api(
                "PATCH", f"/api/contacts/{contact_id}", json={"last_name": f"Changed-{contact_id}"}
            ).status_code
            == 200
        )
    crm.admin("stats/reset")

    second = _operator(api_conn, table).execute({})  # type: ignore[arg-type]
    assert second["records_fetched"] == 3 + at_cursor
    assert crm.admin_get("stats")["records_served"] == 3 + at_cursor
    assert _loaded(pg_db, table) == (CONTACTS, CONTACTS)
    assert rows(pg_db, f"SELECT id, last_name FROM {table} WHERE last_name LIKE 'Changed-%' ORDER BY id") == [
        (3, "Changed-3"), (77, "Changed-77"), (150, "Changed-150"),
    ]  # fmt: skip
    assert _cursor(pg_db) > cursor

    newest = _cursor(pg_db)
    at_newest = len(crm.api("GET", "/api/offset/contacts", params={"updated_since": newest}).json()["items"])
    third = _operator(api_conn, table).execute({})  # type: ignore[arg-type]
    assert third["records_fetched"] == at_newest < 3  # nothing changed: only what sits at the cursor


def test_rate_limits_and_server_errors_are_survived_with_each_record_once(
    crm: CrmServer, api_conn: str, db_conn: str, pg_db: str
) -> None:
    # Only on the endpoint this import reads: a request of an earlier test can still reach the CRM (after the
    # killed run of the test below, one took the second 429, seen in a random order), and take a fault.
    ours = "/api/page/contacts"
    crm.admin("faults", {"kind": "500", "count": 2, "path_contains": ours})
    crm.admin("faults", {"kind": "429", "count": 2, "retry_after": 1, "path_contains": ours})
    crm.admin("faults", {"kind": "malformed", "count": 1, "path_contains": ours})
    table = _table()
    started = time.monotonic()
    result = _operator(api_conn, table, "page_number", **KEYLESS).execute({})  # type: ignore[arg-type]
    by_status = crm.admin_get("stats")["by_status"]
    assert by_status.get("500") == 2 and by_status.get("429") == 2
    assert (
        time.monotonic() - started >= 2
    )  # Retry-After: 1 was honoured twice (a minimum: load cannot fail it)
    # What the CRM sent (it counts the records of whole pages only, not the malformed one) was written once.
    assert crm.admin_get("stats")["records_served"] == CONTACTS
    assert _loaded(pg_db, table) == (CONTACTS, CONTACTS)
    assert result["records_loaded"] == CONTACTS


def test_a_request_that_times_out_is_retried(crm: CrmServer, api_conn: str, db_conn: str, pg_db: str) -> None:
    crm.admin("faults", {"kind": "timeout", "count": 1, "delay_s": 3})
    table = _table()
    result = _operator(api_conn, table, "offset", timeout=0.5, **KEYLESS).execute({})  # type: ignore[arg-type]
    assert _loaded(pg_db, table) == (CONTACTS, CONTACTS)
    assert result["records_loaded"] == CONTACTS
    # It gave up on the slow answer and asked again: the CRM finishes the held request too, so it serves
    # the first page (40 records) twice. Waiting for that also keeps the held request out of the next test.
    deadline = time.monotonic() + 30
    while _served(crm) < CONTACTS + 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _served(crm) == CONTACTS + 40


def test_bad_requests_fail_fast_without_retries(
    crm: CrmServer, api_conn: str, db_conn: str, pg_db: str
) -> None:
    with pytest.raises(AirflowFailException) as caught:
        _operator(
            api_conn, _table(), "offset", incremental=None, query={"updated_since": "last tuesday"}
        ).execute({})  # type: ignore[arg-type]
    message = str(caught.value)
    assert "customer acme" in message and "crm_contacts" in message and "HTTP 400" in message
    assert "/api/offset/contacts" in message
    assert crm.admin_get("stats")["by_status"] == {"400": 1}


def test_expired_oauth_token_is_refreshed(crm: CrmServer, api_conn: str, db_conn: str, pg_db: str) -> None:
    crm.admin("config", {"latency_ms": 40})
    expired = threading.Event()

    def expire_after_a_few_pages() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and crm.admin_get("stats")["requests"] < 3:
            time.sleep(0.01)
        crm.admin("expire-tokens")
        expired.set()

    watcher = threading.Thread(target=expire_after_a_few_pages, daemon=True)
    watcher.start()
    table = _table()
    result = _operator(api_conn, table, "cursor", **KEYLESS).execute({})  # type: ignore[arg-type]
    watcher.join()
    assert expired.is_set()
    stats = crm.admin_get("stats")
    assert stats["token_requests"] == 2
    assert stats["by_status"].get("401") == 1
    assert _loaded(pg_db, table) == (CONTACTS, CONTACTS)
    assert result["records_loaded"] == CONTACTS


@pytest.mark.parametrize(
    ("auth", "login", "password", "expected"),
    [
        ({"type": "oauth2_client_credentials", "token_url": "/oauth/token"}, "demo-client", "wrong-secret-123", "OAuth token request"),
        ({"type": "api_key"}, "", "wrong-secret-123", "HTTP 401"),
        ({"type": "bearer"}, "", "wrong-secret-123", "HTTP 401"),
        ({"type": "basic"}, "demo", "wrong-secret-123", "HTTP 401"),
    ],
)  # fmt: skip
def test_bad_credentials_fail_fast_and_never_show_the_secret(
    crm: CrmServer, db_conn: str, pg_db: str, monkeypatch: pytest.MonkeyPatch,
    auth: dict[str, Any], login: str, password: str, expected: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_CRM_BAD", _conn_json(crm, login, password))
    with pytest.raises(AirflowFailException) as caught:
        _operator("crm_bad", _table(), auth=auth).execute({})  # type: ignore[arg-type]
    message = str(caught.value)
    assert expected in message and "customer acme" in message
    assert "wrong-secret-123" not in message
    assert crm.admin_get("stats")["requests"] <= 1  # no retries


def test_invalid_records_are_quarantined_with_reasons(
    crm: CrmServer, api_conn: str, db_conn: str, pg_db: str
) -> None:
    strict = {
        "fields": [
            *SCHEMA["fields"][:3],
            {"name": "email", "type": "string", "pattern": r"[a-m].*"},
            SCHEMA["fields"][4],
        ]
    }
    table = _table()
    result = _operator(api_conn, table, "cursor", row_schema=strict).execute({})  # type: ignore[arg-type]
    bad = rows(pg_db, "SELECT count(*) FROM b2b_quarantine WHERE reasons LIKE '%does not match pattern%'")[0][
        0
    ]
    assert result["records_quarantined"] > 0
    assert result["records_loaded"] + result["records_quarantined"] == CONTACTS
    assert _loaded(pg_db, table)[0] == result["records_loaded"]
    assert bad >= result["records_quarantined"]
    raw = rows(pg_db, "SELECT raw_record FROM b2b_quarantine ORDER BY quarantined_at DESC LIMIT 1")[0][0]
    assert json.loads(raw)["email"][0] > "m"


KILL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[2])
    from b2b_integrations.operators.http_import import HttpApiImportOperator
    HttpApiImportOperator(**json.loads(sys.argv[1])).execute({})
    """
)


def test_a_run_killed_mid_way_and_retried_loads_nothing_twice_and_misses_nothing(
    crm: CrmServer, api_conn: str, db_conn: str, pg_db: str
) -> None:
    table = _table()
    _operator(api_conn, table, "cursor", endpoint="/api/cursor/contacts").execute({})  # type: ignore[arg-type]
    for contact_id in range(1, 41):  # forty changes for the next run, over ten pages of four
        crm.api("PATCH", f"/api/contacts/{contact_id}", json={"first_name": f"Run2-{contact_id}"})
    cursor_before = _cursor(pg_db)
    crm.admin("config", {"latency_ms": 300})
    crm.admin("stats/reset")
    arguments = {
        "task_id": "import_contacts", "customer_id": "acme", "integration": "crm_contacts", "flow": "contacts",
        "http_conn_id": api_conn, "endpoint": "/api/cursor/contacts", "records_path": "results",
        "pagination": {"style": "cursor", "limit": 4},
        "auth": {"type": "oauth2_client_credentials", "token_url": "/oauth/token"},
        "incremental": {"cursor_field": "updated_at", "param": "updated_since"},
        "row_schema": SCHEMA, "db_conn_id": "http_app_db", "target": {"table": table, "key": ["customer_id", "id"]},
        "constants": {"customer_id": "acme"},
    }  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    worker = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, json.dumps(arguments), str(REPO / "plugins")], env=env
    )
    deadline = time.monotonic() + 30
    while crm.admin_get("stats")["records_served"] < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert worker.returncode == -signal.SIGKILL  # killed before it finished (a finished run commits)
    assert _cursor(pg_db) == cursor_before  # nothing committed
    assert rows(pg_db, f"SELECT count(*) FROM {table} WHERE first_name LIKE 'Run2-%'") == [(0,)]

    crm.admin("config", {"latency_ms": 0})
    _operator(api_conn, table, "cursor", pagination={"style": "cursor", "limit": 4}).execute({})  # type: ignore[arg-type]
    assert _loaded(pg_db, table) == (CONTACTS, CONTACTS)
    assert rows(pg_db, f"SELECT count(*) FROM {table} WHERE first_name LIKE 'Run2-%'") == [(40,)]
    assert _cursor(pg_db) > cursor_before


def test_shipped_template_runs_as_a_generated_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str, crm: CrmServer, pg_db: str
) -> None:
    """crm_contacts, deployed for one customer, imports contacts (cursor pages) and invoices (page numbers)."""
    from airflow.dag_processing.dagbag import DagBag

    from helpers import shipped_template, write_include

    customer = {
        "id": "crmco",
        "name": "CRM Co",
        "integrations": {
            "crm_contacts": {
                "config": {"page_size": 50},
                "connections": {"crm_api": "crmco_crm", "app_db": "crmco_db"},
            }
        },
    }
    include = write_include(
        tmp_path / "include", {"crm_contacts": shipped_template("crm_contacts")}, {"crmco": customer}
    )
    monkeypatch.setenv("B2B_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_CRMCO_CRM", _conn_json(crm, crm.client_id, crm.client_secret))
    monkeypatch.setenv("AIRFLOW_CONN_CRMCO_DB", f"{PG}/{pg_db}")

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    for flow in ("contacts", "invoices"):
        run = bag.dags[f"crmco__crm_contacts__{flow}"].test()
        assert run.state == "success", flow
    assert rows(pg_db, "SELECT count(*), count(DISTINCT id), min(customer_id) FROM crm_contacts") == [
        (CONTACTS, CONTACTS, "crmco")
    ]
    invoices = len(crm.api("GET", "/api/offset/invoices", params={"limit": 1000}).json()["items"])
    assert rows(pg_db, "SELECT count(*) FROM crm_invoices") == [(invoices,)]
    assert rows(pg_db, "SELECT count(*) FROM b2b_sync_cursors WHERE customer_id = 'crmco'") == [(2,)]
