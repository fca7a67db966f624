"""Customer credentials and activation through the real API server, scheduler and dag-processor on
PostgreSQL: credentials become Airflow connections that real runs use (the demo CRM over OAuth2, the test
sshd over SFTP with a key), "test connection" says ok or why not, no answer, log or file holds a secret,
another customer's token sees nothing, and webhooks sent while an instance is inactive are all processed
once it is activated again."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from airflow_stack import AirflowStack, start_airflow_stack
from crm_server import CrmServer, start_crm_server
from helpers import PG, shipped_template, write_include
from helpers import pg_rows as rows
from sshd import SshServer

pytestmark = pytest.mark.airflow_stack

CUSTOMER, OTHER = "credco", "otherco"
CRM_SECRET = f"crm-secret-{uuid.uuid4().hex}"
HOOK_SECRET = "whsec_" + base64.b64encode(b"credentials-e2e-signing-key-0123").decode()
API = f"/b2b/api/v1/customers/{CUSTOMER}/instances"
CRM_DAG = f"{CUSTOMER}__crm_contacts__contacts"
SFTP_DAG = f"{CUSTOMER}__partner_orders_sftp__orders"
HOOK_DAG = f"{CUSTOMER}__billing_webhooks__invoice_events"
HOOK_URL = f"/b2b/webhooks/{CUSTOMER}/billing_webhooks/invoice_events"


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmServer]:
    server = start_crm_server(client_secret=CRM_SECRET, access_log=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def folder(sshd: SshServer) -> str:
    path = Path(sshd.root) / f"cred_{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return str(path)


def _manual(template: dict[str, Any], flow: str, **step_options: Any) -> dict[str, Any]:
    template["defaults"] = {"retries": 0}
    template["flows"][flow]["trigger"] = {"type": "manual"}
    template["flows"][flow]["steps"][0].update(step_options)
    return template


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_db: str, crm: CrmServer, folder: str
) -> Iterator[AirflowStack]:
    crm_template = _manual(shipped_template("crm_contacts"), "contacts")
    del crm_template["flows"]["invoices"]
    include = write_include(
        tmp_path_factory.mktemp("cred") / "include",
        {
            "crm_contacts": crm_template,
            "partner_orders_sftp": _manual(
                shipped_template("partner_orders_sftp"), "orders", settle_seconds=1
            ),
            "billing_webhooks": shipped_template("billing_webhooks"),
        },
        {
            CUSTOMER: {
                "id": CUSTOMER,
                "name": "Cred Co",
                "integrations": {
                    # bound to connections that do not exist: the credentials endpoint replaces them
                    "crm_contacts": {"connections": {"crm_api": "credco_crm_todo", "app_db": "cred_db"}},
                    "partner_orders_sftp": {
                        "config": {"remote_folder": folder},
                        "connections": {"partner_sftp": "credco_sftp_todo", "app_db": "cred_db"},
                    },
                    "billing_webhooks": {"connections": {"webhook_secret": "cred_hook", "app_db": "cred_db"}},
                },
            },
            OTHER: {"id": OTHER, "name": "Other Co", "integrations": {}},
        },
    )
    stack = start_airflow_stack(
        include,
        {
            "AIRFLOW_CONN_CRED_DB": f"{PG}/{pg_db}",
            "AIRFLOW_CONN_CRED_HOOK": json.dumps({"conn_type": "generic", "password": HOOK_SECRET}),
            "B2B_CUSTOMER_TOKEN_SECRET": uuid.uuid4().hex,
            # the demo CRM and sshd listen on loopback, which customer connections may not use otherwise
            "B2B_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32",
            "B2B_CONNECTION_TEST_INTERVAL_SECONDS": "2",
        },
    )
    stack.include = include  # type: ignore[attr-defined]
    try:
        stack.wait_for(
            "the three DAGs",
            lambda: (
                len(stack.sql(f"SELECT 1 FROM dag WHERE dag_id IN ('{CRM_DAG}', '{SFTP_DAG}', '{HOOK_DAG}')"))
                == 3
            ),
            timeout=180,
        )
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def client(stack: AirflowStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def admin(stack: AirflowStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token()}"}


def _customer_token(client: httpx.Client, admin: dict[str, str], customer: str) -> dict[str, str]:
    answer = client.post(f"/b2b/api/v1/customers/{customer}/tokens", headers=admin, json={})
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


@pytest.fixture(scope="module")
def customer(client: httpx.Client, admin: dict[str, str]) -> dict[str, str]:
    return _customer_token(client, admin, CUSTOMER)


def _oauth(crm: CrmServer, secret: str = CRM_SECRET) -> dict[str, Any]:
    return {
        "kind": "oauth2_client_credentials",
        "base_url": crm.url,
        "client_id": crm.client_id,
        "client_secret": secret,
    }


def _sftp_key(sshd: SshServer) -> dict[str, Any]:
    return {
        "kind": "sftp_key",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.user,
        "private_key": sshd.key_file.read_text(),
        "host_key": (sshd.tmpdir / "host_ed25519.pub").read_text().strip(),
    }


def _secrets(sshd: SshServer) -> list[str]:
    """What must never be shown: the CRM secret and each line of the private key's body."""
    key_lines = [line for line in sshd.key_file.read_text().splitlines() if line and "-----" not in line]
    return [CRM_SECRET, *key_lines]


def _no_secret(text: str, sshd: SshServer) -> None:
    for secret in _secrets(sshd):
        assert secret not in text, "a secret is in an answer, a log or a file"


def _nothing_on_disk(stack: AirflowStack, sshd: SshServer) -> None:
    """No secret in the customer file, its history, or any component's or task's log."""
    for root in (stack.include, stack.home):  # type: ignore[attr-defined]
        for path in Path(root).rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                _no_secret(path.read_text(errors="replace"), sshd)


def _test(client: httpx.Client, headers: dict[str, str], integration: str, slot: str) -> httpx.Response:
    """POST .../test, waiting out the per-slot rate limit (429 + Retry-After) until a deadline."""
    deadline = time.monotonic() + 30
    while True:
        answer = client.post(f"{API}/{integration}/credentials/{slot}/test", headers=headers)
        if answer.status_code != 429 or time.monotonic() > deadline:
            return answer
        time.sleep(float(answer.headers.get("Retry-After", "1")))


def _bound_in_dag(stack: AirflowStack, dag_id: str, conn_id: str) -> bool:
    found = stack.sql(f"SELECT data::text FROM serialized_dag WHERE dag_id = '{dag_id}'")
    return any(conn_id in (text or "") for (text,) in found)


def _run(stack: AirflowStack, client: httpx.Client, admin: dict[str, str], dag_id: str) -> str:
    run_id = f"cred_{uuid.uuid4().hex[:8]}"
    answer = client.post(
        f"/api/v2/dags/{dag_id}/dagRuns", headers=admin, json={"dag_run_id": run_id, "logical_date": None}
    )
    assert answer.status_code == 200, answer.text
    state = stack.wait_for(
        f"{dag_id} run {run_id} to finish",
        lambda: next(
            (
                s
                for (s,) in stack.sql(f"SELECT state FROM dag_run WHERE run_id = '{run_id}'")
                if s in ("success", "failed")
            ),
            None,
        ),
        timeout=240,
    )
    assert state == "success", stack.log("scheduler")[-3000:]
    return run_id


def _task_logs(stack: AirflowStack, dag_id: str, run_id: str) -> str:
    """The run's task logs, for a failure message."""
    found = sorted((stack.home / "logs").rglob("*.log"))
    return "\n".join(
        p.read_text(errors="replace")[-3000:] for p in found if dag_id in str(p) and run_id in str(p)
    )


def test_oauth2_credentials_become_the_connection_a_real_import_uses(
    stack: AirflowStack, client: httpx.Client, admin: dict[str, str], customer: dict[str, str], crm: CrmServer,
    sshd: SshServer, pg_db: str,
) -> None:  # fmt: skip
    conn_id = f"b2b_{CUSTOMER}__crm_contacts__crm_api"
    saved = client.put(f"{API}/crm_contacts/credentials/crm_api", headers=customer, json=_oauth(crm))
    assert saved.status_code in (200, 201), saved.text
    body = saved.json()
    assert (body["conn_id"], body["kind"], body["configured"], body["managed"]) == (
        conn_id, "oauth2_client_credentials", True, True,
    )  # fmt: skip
    assert (body["host"], body["login"]) == (crm.url, crm.client_id)
    assert body["instance"]["settings"]["connections"]["crm_api"] == conn_id
    assert saved.headers["ETag"] == body["instance"]["etag"]

    listed = client.get(f"{API}/crm_contacts/credentials", headers=customer)
    assert listed.status_code == 200
    slots = {s["slot"]: s for s in listed.json()["slots"]}
    assert slots["crm_api"]["configured"] and slots["crm_api"]["host"] == crm.url
    # the engineer's app database is bound and exists, but its host is not the customer's to see
    assert (
        slots["app_db"]["configured"] and not slots["app_db"]["managed"] and slots["app_db"]["host"] is None
    )
    assert (
        client.get(f"{API}/crm_contacts/credentials", headers=admin).json()["slots"][1]["host"] == "127.0.0.1"
    )

    tested = _test(client, customer, "crm_contacts", "crm_api")
    assert tested.status_code == 200 and tested.json()["ok"] is True, tested.text
    assert "issued an access token" in tested.json()["reason"]

    stack.wait_for(
        "the DAG bound to the new connection", lambda: _bound_in_dag(stack, CRM_DAG, conn_id), timeout=120
    )
    _run(stack, client, admin, CRM_DAG)
    assert rows(pg_db, f"SELECT count(*) FROM crm_contacts WHERE customer_id = '{CUSTOMER}'")[0][0] > 0

    versions = client.get(f"{API}/crm_contacts/versions", headers=admin).json()["versions"]
    assert versions[-1]["action"] == "credentials for crm_api"
    for answer in (saved, listed, tested, client.get(f"{API}/crm_contacts/versions", headers=admin)):
        _no_secret(answer.text, sshd)
    _nothing_on_disk(stack, sshd)


def test_sftp_key_credentials_become_the_connection_a_real_file_import_uses(
    stack: AirflowStack, client: httpx.Client, admin: dict[str, str], customer: dict[str, str],
    sshd: SshServer, folder: str, pg_db: str,
) -> None:  # fmt: skip
    conn_id = f"b2b_{CUSTOMER}__partner_orders_sftp__partner_sftp"
    saved = client.put(
        f"{API}/partner_orders_sftp/credentials/partner_sftp", headers=customer, json=_sftp_key(sshd)
    )
    assert saved.status_code in (200, 201), saved.text
    assert (saved.json()["kind"], saved.json()["host"], saved.json()["port"]) == (
        "sftp_key",
        sshd.host,
        sshd.port,
    )
    tested = _test(client, customer, "partner_orders_sftp", "partner_sftp")
    assert tested.json()["ok"] is True, tested.text
    assert "listed the home folder" in tested.json()["reason"]
    for answer in (saved, tested, client.get(f"{API}/partner_orders_sftp/credentials", headers=customer)):
        _no_secret(answer.text, sshd)

    order = f"CRED-{uuid.uuid4().hex[:6].upper()}"
    (Path(folder) / f"{order}.csv").write_text(
        f"order_id,order_date,sku,quantity,unit_price,status\n{order},2026-01-02,SKU-1,3,9.50,new\n"
    )
    stack.wait_for(
        "the DAG bound to the new connection", lambda: _bound_in_dag(stack, SFTP_DAG, conn_id), timeout=120
    )
    run_id = _run(stack, client, admin, SFTP_DAG)
    loaded = rows(pg_db, "SELECT count(*) FROM pg_tables WHERE tablename = 'partner_orders'") == [
        (1,)
    ] and rows(pg_db, f"SELECT quantity FROM partner_orders WHERE order_id = '{order}'")
    assert loaded == [(3,)], _task_logs(stack, SFTP_DAG, run_id)
    _nothing_on_disk(stack, sshd)


def test_connection_test_says_why_it_failed_without_the_secret(
    stack: AirflowStack, client: httpx.Client, customer: dict[str, str], crm: CrmServer, sshd: SshServer
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    assert client.put(
        f"{API}/crm_contacts/credentials/crm_api", headers=customer, json=_oauth(crm, wrong)
    ).is_success
    try:
        failed = _test(client, customer, "crm_contacts", "crm_api")
        assert failed.status_code == 200 and failed.json()["ok"] is False
        assert "refused the client id or secret (HTTP 401)" in failed.json()["reason"]
        assert wrong not in failed.text
        again = client.post(f"{API}/crm_contacts/credentials/crm_api/test", headers=customer)
        assert again.status_code == 429 and int(again.headers["Retry-After"]) >= 1
    finally:
        client.put(f"{API}/crm_contacts/credentials/crm_api", headers=customer, json=_oauth(crm))

    wrong_host_key = {**_sftp_key(sshd), "host_key": "ssh-ed25519 " + base64.b64encode(
        len(b"ssh-ed25519").to_bytes(4, "big") + b"ssh-ed25519" + (32).to_bytes(4, "big") + b"x" * 32).decode()}  # fmt: skip
    assert client.put(
        f"{API}/partner_orders_sftp/credentials/partner_sftp", headers=customer, json=wrong_host_key
    ).is_success
    try:
        failed = _test(client, customer, "partner_orders_sftp", "partner_sftp")
        assert failed.json()["ok"] is False and "host key is not the one given" in failed.json()["reason"]
    finally:
        client.put(
            f"{API}/partner_orders_sftp/credentials/partner_sftp", headers=customer, json=_sftp_key(sshd)
        )

    # hostile input: a 422 naming slot and field, nothing stored
    for body, field in (
        ({**_oauth(crm), "base_url": "http://169.254.169.254/latest"}, "base_url"),
        ({**_oauth(crm), "client_id": "a\r\nX-Injected: 1"}, "client_id"),
        ({"kind": "basic", "base_url": crm.url, "login": "u", "password": "p"}, "kind"),
        ({**_oauth(crm), "client_secret": "s" * 5000}, "client_secret"),
    ):
        refused = client.put(f"{API}/crm_contacts/credentials/crm_api", headers=customer, json=body)
        assert refused.status_code == 422 and refused.json()["field"] == field, refused.text
        assert "connection slot crm_api" in refused.json()["detail"]
        _no_secret(refused.text, sshd)
    assert (
        client.put(f"{API}/crm_contacts/credentials/nope", headers=customer, json=_oauth(crm)).status_code
        == 404
    )
    app_db = client.put(f"{API}/crm_contacts/credentials/app_db", headers=customer, json=_oauth(crm))
    assert app_db.status_code == 422 and "an engineer made" in app_db.json()["detail"]
    assert (
        client.put(f"{API}/crm_contacts/credentials/crm_api", headers=customer, content=b"[1]").status_code
        == 400
    )


def test_another_customers_token_gets_the_same_404_as_a_missing_customer(
    stack: AirflowStack, client: httpx.Client, admin: dict[str, str], crm: CrmServer
) -> None:
    other = _customer_token(client, admin, OTHER)
    for method, suffix, body in (
        ("GET", "/crm_contacts/credentials", None),
        ("PUT", "/crm_contacts/credentials/crm_api", _oauth(crm, "stolen")),
        ("POST", "/crm_contacts/credentials/crm_api/test", None),
    ):
        theirs = client.request(method, API + suffix, headers=other, json=body)
        missing = client.request(method, API.replace(CUSTOMER, "nosuch") + suffix, headers=other, json=body)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["detail"].replace(CUSTOMER, "nosuch") == missing.json()["detail"]
    conn = client.get(f"/api/v2/connections/b2b_{CUSTOMER}__crm_contacts__crm_api", headers=admin)
    assert conn.status_code != 200 or "stolen" not in conn.text


def _webhook(message_id: str, invoice: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"invoice_id": invoice, "status": "paid", "amount_cents": 700, "currency": "EUR"}
    ).encode()
    now = datetime.now(UTC)
    return body, {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(HOOK_SECRET).sign(message_id, now, body.decode()),
    }


def _handled(stack: AirflowStack) -> list[str]:
    return [
        message
        for (value,) in stack.sql(
            f"SELECT value FROM xcom WHERE dag_id = '{HOOK_DAG}' AND task_id = 'normalise' AND key = 'return_value'"
        )
        for message in (value if isinstance(value, dict) else json.loads(value)).get("webhook_events", [])
    ]


def _send_until(client: httpx.Client, prefix: str, inactive: bool) -> list[str]:
    """Send webhooks until one is answered as inactive (or active); the ids sent (every one is stored).
    The API server reads paused DAGs every few seconds, so a pause by hand shows within that time."""
    sent: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = f"{prefix}_{len(sent)}"
        body, headers = _webhook(message, f"INV-{message}")
        answer = client.post(HOOK_URL, content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        sent.append(message)
        if (answer.json().get("active") is False) == inactive:
            return sent
        time.sleep(1)
    raise AssertionError(f"no webhook answered {'inactive' if inactive else 'active'} within 30 s")


def test_webhooks_sent_while_inactive_are_each_processed_once_on_activation(
    stack: AirflowStack, client: httpx.Client, admin: dict[str, str], pg_db: str
) -> None:
    instance = f"{API}/billing_webhooks"
    batch = uuid.uuid4().hex[:6]
    # paused by hand in Airflow (the file still says active): the answer says so too
    paused = client.patch(f"/api/v2/dags/{HOOK_DAG}", headers=admin, json={"is_paused": True})
    assert paused.status_code == 200, paused.text
    ids = _send_until(client, f"msg_{batch}_hand", inactive=True)
    off = client.post(f"{instance}/deactivate", headers=admin)
    assert off.status_code == 200 and off.json()["active"] is False, off.text
    assert stack.sql(f"SELECT is_paused FROM dag WHERE dag_id = '{HOOK_DAG}'") == [(True,)]
    runs_before = stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id = '{HOOK_DAG}'")[0][0]

    more = [f"msg_{batch}_{i}" for i in range(5)]
    answers = [
        client.post(HOOK_URL, content=b, headers=h) for b, h in (_webhook(m, f"INV-{m}") for m in more)
    ]
    assert [a.status_code for a in answers] == [202] * 5
    assert all(a.json()["active"] is False and "processed when the integration is activated" in a.json()["detail"]
               for a in answers)  # fmt: skip
    ids += more
    # Airflow queued nothing for the paused DAG (the asset manager skips it in the storing transaction)
    assert stack.sql(f"SELECT count(*) FROM asset_dag_run_queue WHERE target_dag_id = '{HOOK_DAG}'") == [(0,)]
    assert stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id = '{HOOK_DAG}'")[0][0] == runs_before

    on = client.post(f"{instance}/activate", headers=admin)
    assert on.status_code == 200, on.text
    assert (on.json()["held_events"], on.json()["runs_queued"]) == (len(ids), [HOOK_DAG])
    stack.wait_for(
        f"the {len(ids)} invoices",
        lambda: (
            rows(pg_db, f"SELECT count(*) FROM invoice_events WHERE id LIKE 'INV-msg_{batch}_%'")
            == [(len(ids),)]
        ),
        timeout=180,
    )
    stack.wait_for(
        "the runs to finish",
        lambda: (
            stack.sql(
                f"SELECT count(*) FROM dag_run WHERE dag_id = '{HOOK_DAG}' AND state IN ('queued', 'running')"
            )
            == [(0,)]
        ),
    )
    handled = [m for m in _handled(stack) if m.startswith(f"msg_{batch}_")]
    assert sorted(handled) == sorted(ids)  # every one, none twice
    # active again: new webhooks are answered as usual (once the paused list is read again) and run
    after = _send_until(client, f"msg_{batch}_after", inactive=False)
    stack.wait_for(
        "the webhooks sent after activation",
        lambda: (
            rows(pg_db, f"SELECT count(*) FROM invoice_events WHERE id LIKE 'INV-msg_{batch}_after_%'")
            == [(len(after),)]
        ),
        timeout=180,
    )
