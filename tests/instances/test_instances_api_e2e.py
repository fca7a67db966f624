"""The instances API through the real API server on PostgreSQL, with the dag-processor and scheduler:
onboarding reaches the scheduler, ETags stop lost updates, a refused write changes nothing, customer
tokens see only their customer."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_stack import AirflowStack, start_airflow_stack
from b2b_integrations.instances import documents
from helpers import REPO, docs_file_blocks, minimal_customer, minimal_template, write_include

pytestmark = pytest.mark.airflow_stack

API = "/b2b/api/v1"
YEARLY, YEARLY_LATER = "0 0 1 1 *", "0 0 2 1 *"


def _template() -> dict:
    template = minimal_template("sync")
    template["flows"]["snapshot"]["trigger"]["schedule"] = YEARLY
    template["description"] = "Stock levels into our app."
    return template


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    # The shipped crm_contacts template with its kept version 1 and acme's instance of it (rollouts are
    # tried on them; inactive, so its DAGs do not run), plus a minimal template for the other tests.
    include = tmp_path_factory.mktemp("instances") / "include"
    shutil.copytree(REPO / "include" / "integrations" / "versions", include / "integrations" / "versions")
    shutil.copy(REPO / "include" / "integrations" / "crm_contacts.yaml", include / "integrations")
    acme = documents.parse((REPO / "include" / "customers" / "acme.yaml").read_text())
    acme["integrations"] = {"crm_contacts": {**acme["integrations"]["crm_contacts"], "active": False}}
    (include / "customers").mkdir()
    (include / "customers" / "acme.yaml").write_text(documents.dump(acme))
    write_include(
        include,
        templates={"sync": _template()},
        customers={"northwind": minimal_customer("northwind"), "contoso": minimal_customer("contoso")},
    )
    stack = start_airflow_stack(
        include, {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer"}
    )
    try:
        sync_dags = "SELECT 1 FROM dag WHERE NOT is_stale AND dag_id LIKE '%\\_\\_sync\\_\\_snapshot'"
        stack.wait_for("the customers' DAGs", lambda: len(stack.sql(sync_dags)) == 2)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def admin(stack: AirflowStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token('admin')}"}


def _client(stack: AirflowStack, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=stack.url + API, headers=headers, timeout=60)


def _customer_token(
    stack: AirflowStack, admin: dict[str, str], customer: str, scopes: list[str]
) -> dict[str, str]:
    with _client(stack, admin) as api:
        answer = api.post(f"/customers/{customer}/tokens", json={"scopes": scopes, "ttl_seconds": 600})
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _dag(stack: AirflowStack, dag_id: str) -> tuple | None:
    rows = stack.sql(
        f"SELECT is_paused, timetable_summary FROM dag WHERE dag_id = '{dag_id}' AND NOT is_stale"
    )
    return rows[0] if rows else None


def test_onboarding_reaches_the_scheduler_without_a_restart(
    stack: AirflowStack, admin: dict[str, str]
) -> None:
    customer = "hooli"
    dag_id = f"{customer}__sync__snapshot"
    with _client(stack, admin) as api:
        assert api.post("/customers", json={"id": customer, "name": "Hooli"}).status_code == 201
        market = api.get("/marketplace/sync").json()
        assert market["config_schema"]["properties"]["region"]["enum"] == ["eu", "us"]
        assert market["config_schema"]["required"] == ["region"]
        assert [slot["name"] for slot in market["connections"]] == ["db"]
        created = api.put(
            f"/customers/{customer}/instances/sync",
            json={"config": {"region": "us"}, "connections": {"db": "hooli_db"}},
        )
        assert created.status_code == 201, created.text + stack.log("api-server")[-4000:]
        assert created.json()["active"] is False and created.json()["template_version"] == "1"
        # new, inactive: the DAG appears paused (the stack's default would be unpaused)
        assert stack.wait_for("the new DAG", lambda: _dag(stack, dag_id))[0] is True
        activated = api.post(f"/customers/{customer}/instances/sync/activate")
        assert activated.status_code == 200, activated.text
        assert activated.json()["dags_changed"] == [dag_id]
        assert _dag(stack, dag_id)[0] is False
        # a schedule change reaches the scheduler's view of the DAG
        current = api.get(f"/customers/{customer}/instances/sync")
        changed = {**current.json()["settings"], "flows": {"snapshot": {"schedule": YEARLY_LATER}}}
        answer = api.put(
            f"/customers/{customer}/instances/sync",
            json=changed,
            headers={"If-Match": current.headers["etag"]},
        )
        assert answer.status_code == 200, answer.text
        stack.wait_for("the new schedule", lambda: YEARLY_LATER in (_dag(stack, dag_id) or (None, ""))[1])
        # a flow disabled through the API: its DAG goes
        current = api.get(f"/customers/{customer}/instances/sync")
        disabled = {**current.json()["settings"], "flows": {"snapshot": {"enabled": False}}}
        answer = api.put(
            f"/customers/{customer}/instances/sync",
            json=disabled,
            headers={"If-Match": current.headers["etag"]},
        )
        assert answer.status_code == 200, answer.text
        stack.wait_for("the disabled flow's DAG to go", lambda: _dag(stack, dag_id) is None)
        deactivated = api.post(f"/customers/{customer}/instances/sync/deactivate")
        assert deactivated.status_code == 200 and "kept" in deactivated.json()["detail"]
        versions = api.get(f"/customers/{customer}/instances/sync/versions").json()["versions"]
    assert [v["action"] for v in versions] == ["create", "activate", "update", "update", "deactivate"]
    assert all(v["by"] == "admin" for v in versions)
    assert versions[2]["changes"] == [{"path": "flows", "to": {"snapshot": {"schedule": YEARLY_LATER}}}]


def test_a_refused_write_changes_nothing(stack: AirflowStack, admin: dict[str, str]) -> None:
    path = Path(stack.env["B2B_INCLUDE_DIR"]) / "customers" / "contoso.yaml"
    before = path.read_bytes()
    with _client(stack, admin) as api:
        current = api.get("/customers/contoso/instances/sync")
        bad = {
            "config": {"region": "mars", "threshold": -1},
            "connections": {"db": "contoso_db"},
            "flows": {"nope": {}},
        }
        answer = api.put(
            "/customers/contoso/instances/sync", json=bad, headers={"If-Match": current.headers["etag"]}
        )
        after = api.get("/customers/contoso/instances/sync")
    assert answer.status_code == 422
    problems = {(p["key_path"], p["file"]) for p in answer.json()["problems"]}
    assert ("integrations.sync.config.region", "include/customers/contoso.yaml") in problems
    assert any(key == "integrations.sync.config.threshold" for key, _ in problems)
    assert any(key.startswith("integrations.sync.flows") for key, _ in problems)
    assert path.read_bytes() == before
    assert after.headers["etag"] == current.headers["etag"]


def test_two_concurrent_writers_one_wins_one_gets_412(stack: AirflowStack, admin: dict[str, str]) -> None:
    with _client(stack, admin) as api:
        current = api.get("/customers/contoso/instances/sync")
    etag, settings = current.headers["etag"], current.json()["settings"]
    answers: list[httpx.Response] = []
    start = threading.Barrier(2)

    def write(threshold: int) -> None:
        body = {**settings, "config": {**settings["config"], "threshold": threshold}}
        with _client(stack, admin) as api:
            start.wait()
            answers.append(
                api.put("/customers/contoso/instances/sync", json=body, headers={"If-Match": etag})
            )

    threads = [threading.Thread(target=write, args=(value,)) for value in (11, 12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 412]
    winner = next(a for a in answers if a.status_code == 200)
    loser = next(a for a in answers if a.status_code == 412)
    assert loser.headers["etag"] == winner.headers["etag"]  # the 412 says what is current now
    with _client(stack, admin) as api:
        assert api.get("/customers/contoso/instances/sync").json()["settings"] == winner.json()["settings"]


# Every route that names a customer, with what a customer token may try.
ROUTES = [
    ("GET", "/customers/{c}"),
    ("GET", "/customers/{c}/instances"),
    ("GET", "/customers/{c}/instances/sync"),
    ("PUT", "/customers/{c}/instances/sync"),
    ("DELETE", "/customers/{c}/instances/sync"),
    ("GET", "/customers/{c}/instances/sync/versions"),
    ("GET", "/customers/{c}/instances/sync/versions/1"),
    ("POST", "/customers/{c}/instances/sync/versions/1/restore"),
    ("POST", "/customers/{c}/instances/sync/activate"),
    ("POST", "/customers/{c}/instances/sync/deactivate"),
]


def test_a_customer_token_sees_only_its_customer(stack: AirflowStack, admin: dict[str, str]) -> None:
    acme = _customer_token(stack, admin, "northwind", ["read", "write"])
    contoso_file = Path(stack.env["B2B_INCLUDE_DIR"]) / "customers" / "contoso.yaml"
    before = contoso_file.read_bytes()
    with _client(stack, acme) as api:
        for method, route in ROUTES:
            body = {"config": {"region": "us"}, "connections": {"db": "x"}}
            other = api.request(method, route.format(c="contoso"), json=body, headers={"If-Match": "*"})
            missing = api.request(method, route.format(c="nobody"), json=body, headers={"If-Match": "*"})
            assert other.status_code == missing.status_code == 404, (method, route, other.text)
            assert other.json() == json.loads(missing.text.replace("nobody", "contoso")), (method, route)
        own = api.get("/customers/northwind/instances/sync")
        assert own.status_code == 200 and own.json()["customer"] == "northwind"
        # binding another customer's connection would use its credentials: refused, nothing written
        settings, etag = own.json()["settings"], own.headers["etag"]
        stolen = api.put(
            "/customers/northwind/instances/sync",
            json={**settings, "connections": {"db": "contoso_db"}},
            headers={"If-Match": etag},
        )
        assert stolen.status_code == 422
        assert [p["key_path"] for p in stolen.json()["problems"]] == ["integrations.sync.connections.db"]
        mine = api.put(
            "/customers/northwind/instances/sync",
            json={**settings, "connections": {"db": "b2b_northwind__sync__db"}},
            headers={"If-Match": etag},
        )
        assert mine.status_code == 200, mine.text
        for method, route in (
            ("GET", "/customers"),
            ("POST", "/customers"),
            ("POST", "/customers/northwind/tokens"),
        ):
            assert api.request(method, route, json={"id": "x", "name": "x"}).status_code == 403, route
    assert contoso_file.read_bytes() == before


def test_scopes_and_bad_tokens(stack: AirflowStack, admin: dict[str, str]) -> None:
    reader = _customer_token(stack, admin, "northwind", ["read"])
    with _client(stack, reader) as api:
        assert api.get("/customers/northwind/instances/sync").status_code == 200
        assert api.post("/customers/northwind/instances/sync/deactivate").status_code == 403
    forged = reader["Authorization"][:-4] + (
        "AAAA" if not reader["Authorization"].endswith("AAAA") else "BBBB"
    )
    for headers in (
        {},
        {"Authorization": forged},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YTpi"},
    ):
        with _client(stack, headers) as api:
            answer = api.get("/customers/northwind/instances/sync")
        assert answer.status_code == 401, headers
    viewer = {"Authorization": f"Bearer {stack.token('viewer')}"}
    with _client(stack, viewer) as api:
        assert api.get("/customers/northwind/instances/sync").status_code == 200
        current = api.get("/customers/northwind/instances/sync")
        answer = api.put(
            "/customers/northwind/instances/sync",
            json=current.json()["settings"],
            headers={"If-Match": current.headers["etag"]},
        )
        assert answer.status_code == 403


def test_hostile_requests_get_clear_4xx(stack: AirflowStack, admin: dict[str, str]) -> None:
    with _client(stack, admin) as api:
        etag = api.get("/customers/northwind/instances/sync").headers["etag"]
        url = "/customers/northwind/instances/sync"
        cases = {
            "NaN": (b'{"config": {"threshold": NaN}}', 400),
            "deep": (b"[" * 10_000 + b"]" * 10_000, 400),
            "huge int": (b'{"config": {"threshold": ' + b"9" * 5000 + b"}}", 400),
            "not an object": (b"[1, 2]", 400),
            "huge body": (b'{"config": {"label": "' + b"x" * 400_000 + b'"}}', 413),
        }
        for name, (body, status) in cases.items():
            answer = api.put(
                url, content=body, headers={"If-Match": etag, "Content-Type": "application/json"}
            )
            assert answer.status_code == status, (name, answer.text[:300])
        assert api.get("/customers/..%2F..%2Fetc/instances/sync").status_code == 404
        assert api.get("/customers/northwind/instances/..%2Fglobex").status_code == 404
        created = api.post("/customers", json={"id": "../../evil", "name": "x"})
        assert created.status_code == 422
        assert api.post("/customers", json={"id": "northwind", "name": "again"}).status_code == 409
        assert api.get("/customers/northwind/instances/sync").headers["etag"] == etag


def _serialized(stack: AirflowStack, dag_id: str) -> str:
    rows = stack.sql(
        f"SELECT data::text FROM serialized_dag WHERE dag_id = '{dag_id}' ORDER BY last_updated DESC LIMIT 1"
    )
    return rows[0][0] if rows else ""


def test_rollout_of_a_shipped_template_dry_run_first(stack: AirflowStack, admin: dict[str, str]) -> None:
    """acme runs crm_contacts version 1 (page_limit); version 2 renamed it page_size."""
    dag_id = "acme__crm_contacts__contacts"
    acme_file = Path(stack.env["B2B_INCLUDE_DIR"]) / "customers" / "acme.yaml"
    stack.wait_for("acme's crm DAG on version 1", lambda: '"page_limit"' in _serialized(stack, dag_id))
    before = acme_file.read_bytes()
    with _client(stack, admin) as api:
        unknown = api.post("/integrations/crm_contacts/rollouts", json={"to_version": "9"}).json()
        assert unknown["ok"] is False and "available" in unknown["problems"][0]["message"]
        dry = api.post("/integrations/crm_contacts/rollouts", json={"to_version": "2", "customers": ["acme"]})
        assert dry.status_code == 200, dry.text
        plan = dry.json()
        assert plan["dry_run"] is True and plan["ok"] is True
        [item] = plan["items"]
        assert (item["customer"], item["from_version"], item["to_version"]) == ("acme", "1", "2")
        assert {"path": "config.page_size", "to": 200} in item["changes"]
        assert acme_file.read_bytes() == before  # a dry run changes nothing
        real = api.post(
            "/integrations/crm_contacts/rollouts",
            json={"to_version": "2", "customers": ["acme"], "dry_run": False},
        ).json()
        assert real["ok"] is True and real["items"][0]["applied"] is True, real
        instance = api.get("/customers/acme/instances/crm_contacts").json()
        assert instance["template_version"] == "2" and instance["settings"]["config"] == {"page_size": 200}
        versions = api.get("/customers/acme/instances/crm_contacts/versions").json()["versions"]
        assert versions[-1]["action"] == "rollout" and versions[-1]["by"] == "admin"
        # a customer token may not roll out
        acme = _customer_token(stack, admin, "acme", ["read", "write"])
    with _client(stack, acme) as api:
        assert api.post("/integrations/crm_contacts/rollouts", json={"to_version": "1"}).status_code == 403
    stack.wait_for("acme's crm DAG on version 2", lambda: '"page_size"' in _serialized(stack, dag_id))
    assert "# yaml-language-server" in acme_file.read_text()  # the file's comments survive the edit


WALKTHROUGH = REPO / "docs" / "examples" / "instances_api" / "walkthrough.sh"


def test_docs_show_the_walkthrough_as_the_test_runs_it() -> None:
    path = "docs/examples/instances_api/walkthrough.sh"
    assert docs_file_blocks("instances-api.md", "instances-api") == [(path, path)]
    assert (REPO / path) == WALKTHROUGH


def test_the_documented_walkthrough_runs_as_written(stack: AirflowStack) -> None:
    password = json.loads((stack.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    env = {**stack.env, "B2B": stack.url, "AIRFLOW_USER": "admin", "AIRFLOW_PASSWORD": password}
    run = subprocess.run(
        ["bash", str(WALKTHROUGH)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    statuses = [line for line in run.stdout.splitlines() if " -> " in line]
    assert statuses == [
        "GET /marketplace/crm_contacts -> 200",
        "POST /customers -> 201",
        "PUT /customers/initrode/instances/crm_contacts -> 201",
        "PUT /customers/initrode/instances/crm_contacts/credentials/crm_api -> 201",
        "POST /customers/initrode/instances/crm_contacts/credentials/crm_api/test -> 200",
        "GET /customers/initrode/instances/crm_contacts -> 200",
        "PUT /customers/initrode/instances/crm_contacts -> 422",
        "GET /customers/initrode/instances/crm_contacts -> 200",
        "PUT /customers/initrode/instances/crm_contacts -> 200",
        "PUT /customers/initrode/instances/crm_contacts -> 412",
        "POST /customers/initrode/instances/crm_contacts/activate -> 200",
        "POST /customers/initrode/tokens -> 201",
        "GET /customers/initrode/instances/crm_contacts -> 200",
        "GET /customers/acme/instances/crm_contacts -> 404",
        "POST /integrations/crm_contacts/rollouts -> 200",
        "POST /integrations/crm_contacts/rollouts -> 200",
        "GET /customers/initrode/instances/crm_contacts/versions -> 200",
        "GET /customers/initrode/instances/crm_contacts/status -> 200",
        "POST /customers/initrode/instances/crm_contacts/deactivate -> 200",
    ], run.stdout
    assert '"key_path":"integrations.crm_contacts.config.page_limit"' in run.stdout
    assert '{"customer":"initrode","applied":true}' in run.stdout
    text = (Path(stack.env["B2B_INCLUDE_DIR"]) / "customers" / "initrode.yaml").read_text()
    settings = documents.plain(documents.parse(text))["integrations"]["crm_contacts"]
    assert settings["version"] == "2" and settings["config"] == {"page_size": 250}
    assert settings["active"] is False and settings["flows"] == {"invoices": {"enabled": False}}
    # the shared slot was bound for it; the credentials are a connection, the file holds only its id
    assert settings["connections"] == {
        "crm_api": "b2b_initrode__crm_contacts__crm_api",
        "app_db": "demo_app_db",
    }
    assert "demo-secret" not in text and "demo-secret" not in run.stdout


def test_a_replacement_keeps_the_activation(stack: AirflowStack, admin: dict[str, str]) -> None:
    with _client(stack, admin) as api:
        current = api.get("/customers/contoso/instances/sync")
        flipped = {**current.json()["settings"], "active": not current.json()["settings"].get("active", True)}
        answer = api.put(
            "/customers/contoso/instances/sync", json=flipped, headers={"If-Match": current.headers["etag"]}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["settings"].get("active") == current.json()["settings"].get("active")
