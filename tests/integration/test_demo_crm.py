"""The demo CRM (include/demo/crm_app.py) through a real server on loopback: data, the five pagination
styles, auth, faults and limits, writes, the inbound sink and signed webhooks. Its pure helpers (cursors,
token bucket, signatures, seeding) are tested directly, loaded from the file by path as other code does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest

from crm_server import APP, CrmServer, start_crm_server

RESOURCES = ("contacts", "companies", "invoices")
STYLES = ("page", "offset", "cursor", "next", "link")
FIELDS = {
    "contacts": ["id", "first_name", "last_name", "email", "company_id", "phone", "updated_at", "created_at"],
    "companies": ["id", "name", "domain", "country", "updated_at", "created_at"],
    "invoices": [
        "id", "company_id", "number", "amount", "currency", "status", "issued_on", "updated_at", "created_at",
    ],
}  # fmt: skip
COUNTS = {"contacts": 250, "companies": 40, "invoices": 300}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(autouse=True)
def _fresh(crm: CrmServer) -> None:
    crm.reset()


@pytest.fixture(scope="module")
def crm_app() -> ModuleType:
    """crm_app.py imported by path (it is a script in include/, not a package module)."""
    spec = importlib.util.spec_from_file_location("demo_crm_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


# --- following each pagination style to its end -----------------------------------------------------------


def _walk_page(crm: CrmServer, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    records, page = [], 1
    while True:
        body = ok(crm.api("GET", f"/api/page/{resource}", params={**params, "page": page}))
        records += body["data"]["items"]
        if page >= body["meta"]["total_pages"]:
            assert body["meta"]["total"] == len(records)
            return records
        page += 1


def _walk_offset(crm: CrmServer, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while True:
        body = ok(crm.api("GET", f"/api/offset/{resource}", params={**params, "offset": len(records)}))
        records += body["items"]
        if not body["items"] or len(records) >= body["total"]:
            return records


def _walk_cursor(crm: CrmServer, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    records, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        body = ok(crm.api("GET", f"/api/cursor/{resource}", params={**params, **extra}))
        records += body["results"]
        cursor = body["next_cursor"]
        if cursor is None:
            return records


def _walk_next(crm: CrmServer, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    body = ok(crm.api("GET", f"/api/next/{resource}", params=params))
    records = body["records"]
    while body["links"]["next"]:
        url = body["links"]["next"]
        assert url.startswith(crm.url + f"/api/next/{resource}?")
        query = httpx.URL(url).params
        assert query["limit"] == str(params["limit"])
        assert query.get("updated_since") == params.get("updated_since")
        body = ok(crm.api("GET", url))
        records += body["records"]
    return records


def _walk_link(crm: CrmServer, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    response = crm.api("GET", f"/api/link/{resource}", params=params)
    records = ok(response)
    while "next" in response.links:
        url = response.links["next"]["url"]
        assert url.startswith(crm.url + f"/api/link/{resource}?")
        assert httpx.URL(url).params.get("updated_since") == params.get("updated_since")
        response = crm.api("GET", url)
        records += ok(response)
    assert "Link" not in response.headers  # the last page has none at all
    return records


WALKERS: dict[str, Callable[[CrmServer, str, dict[str, Any]], list[dict[str, Any]]]] = {
    "page": _walk_page,
    "offset": _walk_offset,
    "cursor": _walk_cursor,
    "next": _walk_next,
    "link": _walk_link,
}
SIZE_PARAM = {"page": "per_page", "offset": "limit", "cursor": "limit", "next": "limit", "link": "per_page"}


def walk(
    crm: CrmServer, style: str, resource: str, size: int, since: str | None = None
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {SIZE_PARAM[style]: size}
    if since is not None:
        params["updated_since"] = since
    return WALKERS[style](crm, resource, params)


def everything(crm: CrmServer, resource: str) -> list[dict[str, Any]]:
    return ok(crm.api("GET", f"/api/offset/{resource}", params={"limit": 1000}))["items"]


def order(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(record["updated_at"], record["id"]) for record in records]


# --- data and pagination -----------------------------------------------------------------------------------


def test_health_needs_no_auth(crm: CrmServer) -> None:
    assert ok(httpx.get(f"{crm.url}/health", trust_env=False)) == {"status": "ok"}


@pytest.mark.parametrize("resource", RESOURCES)
def test_seeded_records(crm: CrmServer, resource: str) -> None:
    records = everything(crm, resource)
    assert len(records) == COUNTS[resource]
    assert sorted(record["id"] for record in records) == list(range(1, COUNTS[resource] + 1))
    assert all(list(record) == FIELDS[resource] for record in records)
    assert all(TS.match(r["updated_at"]) and TS.match(r["created_at"]) for r in records)
    assert order(records) == sorted(order(records))
    ties = Counter(record["updated_at"] for record in records)
    assert sum(1 for n in ties.values() if n > 1) >= 5  # plenty of shared updated_at values
    assert max(ties) < time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # all in the past


def test_seeded_field_values(crm: CrmServer) -> None:
    contacts = everything(crm, "contacts")
    names = {c["first_name"] for c in contacts} | {c["last_name"] for c in contacts}
    assert {"Zoë", "Jürgen", "Ørsted"} <= names
    assert all(re.fullmatch(r"[a-z0-9.\-]+@[a-z0-9.\-]+", c["email"]) for c in contacts)
    invoices = everything(crm, "invoices")
    assert all(re.fullmatch(r"\d+\.\d\d", i["amount"]) for i in invoices)
    assert {i["status"] for i in invoices} == {"draft", "open", "paid"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", i["issued_on"]) for i in invoices)
    assert all(1 <= i["company_id"] <= COUNTS["companies"] for i in invoices)
    # The body is UTF-8 JSON, not \u escapes.
    raw = crm.api("GET", "/api/offset/contacts", params={"limit": 1000}).content
    assert "Ørsted".encode() in raw


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("resource", RESOURCES)
def test_each_style_walks_the_whole_resource_in_order(crm: CrmServer, resource: str, style: str) -> None:
    expected = order(everything(crm, resource))
    assert order(walk(crm, style, resource, 37)) == expected


@pytest.mark.parametrize("style", STYLES)
def test_updated_since_is_inclusive(crm: CrmServer, style: str) -> None:
    contacts = everything(crm, "contacts")
    ties = Counter(c["updated_at"] for c in contacts)
    # A shared timestamp in the middle: every record at it must come back, not just those after it.
    since = next(
        ts for ts, n in sorted(ties.items()) if n >= 3 and ts > contacts[len(contacts) // 2]["updated_at"]
    )
    expected = [c for c in contacts if c["updated_at"] >= since]
    got = walk(crm, style, "contacts", 4, since=since)
    assert order(got) == order(expected)
    assert sum(1 for c in got if c["updated_at"] == since) == ties[since]


def test_updated_since_forms(crm: CrmServer) -> None:
    contacts = everything(crm, "contacts")
    ts = contacts[100]["updated_at"]
    at = sum(1 for c in contacts if c["updated_at"] >= ts)
    after = sum(1 for c in contacts if c["updated_at"] > ts)

    def total(since: str) -> int:
        return ok(crm.api("GET", "/api/offset/contacts", params={"updated_since": since}))["total"]

    assert total(ts) == at
    assert total(ts.replace("Z", "+00:00")) == at
    assert total(ts[:-1]) == at  # no offset: UTC
    hour = int(ts[11:13])
    shifted = f"{ts[:11]}{(hour + 1) % 24:02d}{ts[13:19]}+01:00"
    if hour < 23:
        assert total(shifted) == at
    assert total(ts[:-1] + ".5Z") == after  # half a second later excludes the records at ts
    assert total("2000-01-01") == len(contacts)
    assert total("2999-01-01T00:00:00Z") == 0


def test_page_shapes_and_edges(crm: CrmServer) -> None:
    body = ok(crm.api("GET", "/api/page/contacts"))
    assert body["meta"] == {"page": 1, "per_page": 50, "total": 250, "total_pages": 5}
    assert len(body["data"]["items"]) == 50
    body = ok(crm.api("GET", "/api/page/contacts", params={"page": 9}))
    assert body["data"]["items"] == [] and body["meta"]["page"] == 9
    body = ok(crm.api("GET", "/api/offset/companies", params={"offset": 30}))
    assert (len(body["items"]), body["offset"], body["limit"], body["total"]) == (10, 30, 50, 40)
    assert ok(crm.api("GET", "/api/offset/companies", params={"offset": 40}))["items"] == []
    body = ok(crm.api("GET", "/api/cursor/invoices", params={"limit": 1000}))
    assert len(body["results"]) == 300 and body["next_cursor"] is None
    assert ok(crm.api("GET", "/api/next/companies"))["links"]["next"] is None

    response = crm.api("GET", "/api/link/contacts", params={"per_page": 100})
    assert len(ok(response)) == 100 and response.headers["X-Total-Count"] == "250"
    assert response.links["next"]["url"].endswith("page=2&per_page=100")
    assert response.links["first"]["url"].endswith("page=1&per_page=100")
    assert response.links["last"]["url"].endswith("page=3&per_page=100")
    response = crm.api("GET", "/api/link/contacts", params={"per_page": 100, "page": 4})
    assert ok(response) == [] and "Link" not in response.headers


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/api/page/contacts", {"per_page": 1001}, 400, "per_page must be between 1 and 1000"),
        ("/api/link/contacts", {"per_page": 0}, 400, "per_page must be between 1 and 1000"),
        ("/api/offset/contacts", {"limit": 5000}, 400, "limit must be between 1 and 1000"),
        ("/api/cursor/contacts", {"limit": "lots"}, 400, "limit must be an integer"),
        ("/api/next/contacts", {"limit": 1001}, 400, "limit must be between 1 and 1000"),
        ("/api/page/contacts", {"page": 0}, 400, "page must be at least 1"),
        ("/api/offset/contacts", {"offset": -1}, 400, "offset must be at least 0"),
        ("/api/cursor/contacts", {"cursor": "bm90LWEtY3Vyc29y"}, 400, "invalid cursor"),
        ("/api/next/contacts", {"cursor": "%%%"}, 400, "invalid cursor"),
        ("/api/page/contacts", {"updated_since": "yesterday"}, 400, "updated_since must be an ISO-8601"),
        ("/api/page/deals", {}, 404, "unknown resource 'deals'"),
    ],
)
def test_bad_list_requests(
    crm: CrmServer, path: str, params: dict[str, Any], status: int, message: str
) -> None:
    response = crm.api("GET", path, params=params)
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_max_page_size_is_allowed(crm: CrmServer) -> None:
    assert len(ok(crm.api("GET", "/api/page/invoices", params={"per_page": 1000}))["data"]["items"]) == 300


def test_cursor_pages_stay_stable_while_records_change(crm: CrmServer) -> None:
    first = ok(crm.api("GET", "/api/cursor/contacts", params={"limit": 100}))
    # A record already read moves to the end; one not yet read stays where it was or moves to the end.
    assert (
        crm.api("PATCH", f"/api/contacts/{first['results'][0]['id']}", json={"phone": "1"}).status_code == 200
    )
    rest = _walk_cursor(crm, "contacts", {"limit": 100, "cursor": first["next_cursor"]})
    ids = [c["id"] for c in first["results"]] + [c["id"] for c in rest]
    assert set(ids) == set(range(1, 251)) and len(ids) == 251  # the moved record shows up again, at the end
    assert rest[-1]["id"] == first["results"][0]["id"]


# --- auth --------------------------------------------------------------------------------------------------


def _token(crm: CrmServer, **form: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "client_id": crm.client_id,
        "client_secret": crm.client_secret,
    }
    return crm.client.post("/oauth/token", data={**data, **form})


def test_every_auth_mode_is_accepted(crm: CrmServer) -> None:
    basic = base64.b64encode(f"{crm.basic_user}:{crm.basic_password}".encode()).decode()
    token = ok(_token(crm))
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600 and len(token["access_token"]) > 20
    by_header = ok(
        crm.client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(crm.client_id, crm.client_secret),
        )
    )
    assert by_header["access_token"] != token["access_token"]
    for headers in (
        {"X-API-Key": crm.api_key},
        {"Authorization": f"Bearer {crm.bearer_token}"},
        {"Authorization": f"Basic {basic}"},
        {"Authorization": f"Bearer {token['access_token']}"},
        {"Authorization": f"bearer {by_header['access_token']}"},
    ):
        assert crm.client.get("/api/page/contacts", headers=headers).status_code == 200, headers
    assert crm.admin_get("stats")["token_requests"] == 2


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing credentials"),
        ({"X-API-Key": "wrong-key-1234"}, "invalid API key"),
        ({"Authorization": "Bearer wrong-token-1234"}, "unknown access token"),
        ({"Authorization": "Basic " + base64.b64encode(b"demo:wrong-pass-1234").decode()}, "invalid basic"),
        ({"Authorization": "Basic !!!"}, "invalid basic"),
        ({"Authorization": "Digest wrong-1234"}, "unsupported Authorization scheme"),
    ],
)
def test_bad_credentials_get_401(crm: CrmServer, headers: dict[str, str], detail: str) -> None:
    for path in ("/api/page/contacts", "/api/contacts/1", "/api/webhooks/subscriptions"):
        response = crm.client.get(path, headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert body["error"] == "unauthorized" and detail in body["detail"]
        assert "1234" not in response.text and "wrong-pass" not in response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_endpoint_errors(crm: CrmServer) -> None:
    response = _token(crm, client_secret="not-the-secret")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert "not-the-secret" not in response.text
    assert _token(crm, client_id="someone").status_code == 401
    assert crm.client.post("/oauth/token", data={"grant_type": "client_credentials"}).status_code == 401
    response = _token(crm, grant_type="password")
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"
    assert crm.admin_get("stats")["token_requests"] == 4


def test_oauth_tokens_expire(crm: CrmServer) -> None:
    token = ok(_token(crm))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert crm.client.get("/api/page/contacts", headers=headers).status_code == 200
    assert crm.admin("expire-tokens")["expired"] >= 1
    response = crm.client.get("/api/page/contacts", headers=headers)
    assert response.status_code == 401 and response.json()["detail"] == "access token expired"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # The static bearer token is not an OAuth token: it stays valid.
    assert crm.client.get(
        "/api/page/contacts", headers={"Authorization": f"Bearer {crm.bearer_token}"}
    ).is_success

    assert crm.admin("config", {"token_ttl": 1})["token_ttl"] == 1
    short = ok(_token(crm))
    assert short["expires_in"] == 1
    headers = {"Authorization": f"Bearer {short['access_token']}"}
    assert crm.client.get("/api/page/contacts", headers=headers).status_code == 200
    time.sleep(1.1)
    assert crm.client.get("/api/page/contacts", headers=headers).status_code == 401


def test_tokens_survive_reset(crm: CrmServer) -> None:
    token = ok(_token(crm))["access_token"]
    crm.reset()
    assert crm.client.get("/api/page/contacts", headers={"Authorization": f"Bearer {token}"}).is_success


# --- limits and faults -------------------------------------------------------------------------------------


def test_config_roundtrip_and_validation(crm: CrmServer) -> None:
    assert crm.admin_get("config") == {
        "latency_ms": 0.0,
        "rate_limit_per_second": None,
        "error_rate": 0.0,
        "token_ttl": 3600,
    }
    assert crm.admin("config", {"error_rate": 0.25})["error_rate"] == 0.25
    for bad in ({"error_rate": 2}, {"latency_ms": -1}, {"nope": 1}):
        with pytest.raises(httpx.HTTPStatusError, match="400"):
            crm.admin("config", bad)
    crm.reset()
    assert crm.admin_get("config")["error_rate"] == 0.0


def test_latency(crm: CrmServer) -> None:
    crm.admin("config", {"latency_ms": 200})
    started = time.monotonic()
    assert crm.api("GET", "/api/contacts/1").status_code == 200
    assert time.monotonic() - started >= 0.2
    crm.admin("config", {"latency_ms": 0})
    assert crm.admin_get("config")["latency_ms"] == 0  # how fast it then answers is no test's business
    assert crm.api("GET", "/api/contacts/1").status_code == 200


def test_rate_limit(crm: CrmServer) -> None:
    crm.admin("config", {"rate_limit_per_second": 3})
    statuses = [crm.api("GET", "/api/page/contacts", params={"per_page": 1}) for _ in range(8)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]  # a burst of one second's worth
    limited = [r for r in statuses if r.status_code == 429]
    assert len(limited) >= 4
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert limited[0].json()["error"] == "rate_limited"
    time.sleep(0.4)  # one token back at 3/s
    assert crm.api("GET", "/api/page/contacts").status_code == 200
    assert crm.admin("config", {"rate_limit_per_second": None})["rate_limit_per_second"] is None
    assert all(crm.api("GET", "/api/contacts/1").status_code == 200 for _ in range(10))
    assert crm.admin_get("stats")["by_status"]["429"] == len(limited)


def test_error_rate(crm: CrmServer) -> None:
    crm.admin("config", {"error_rate": 1.0})
    response = crm.api("GET", "/api/page/contacts")
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
    crm.admin("config", {"error_rate": 0.5})
    statuses = Counter(crm.api("GET", "/api/contacts/1").status_code for _ in range(40))
    assert set(statuses) == {200, 500} and 8 <= statuses[500] <= 32


def test_faults_500_and_429(crm: CrmServer) -> None:
    crm.admin("faults", {"kind": "500", "count": 2})
    crm.admin("faults", {"kind": 429, "count": 1, "retry_after": 7})
    assert [f["kind"] for f in crm.admin_get("faults")] == ["500", "429"]
    # Not a list request: no fault.
    assert crm.api("GET", "/api/contacts/1").status_code == 200
    codes = [crm.api("GET", "/api/cursor/contacts").status_code for _ in range(2)]
    assert codes == [500, 500]
    response = crm.api("GET", "/api/offset/invoices")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert crm.api("GET", "/api/offset/invoices").status_code == 200
    assert crm.admin_get("faults") == []


def test_fault_path_filter_and_clear(crm: CrmServer) -> None:
    crm.admin("faults", {"kind": "500", "count": 5, "path_contains": "invoices?page=2"})
    assert crm.api("GET", "/api/page/invoices").status_code == 200
    assert crm.api("GET", "/api/page/invoices", params={"page": 2}).status_code == 500
    assert crm.api("GET", "/api/page/contacts", params={"page": 2}).status_code == 200
    assert crm.admin("faults", method="DELETE") == []
    assert crm.api("GET", "/api/page/invoices", params={"page": 2}).status_code == 200


def test_fault_timeout(crm: CrmServer) -> None:
    crm.admin("faults", {"kind": "timeout", "delay_s": 0.8})
    with pytest.raises(httpx.ReadTimeout):
        crm.api("GET", "/api/page/contacts", timeout=0.3)
    crm.admin("faults", {"kind": "timeout", "delay_s": 0.3})
    started = time.monotonic()
    assert len(ok(crm.api("GET", "/api/page/contacts"))["data"]["items"]) == 50  # slow, then normal
    assert time.monotonic() - started >= 0.3


def test_fault_malformed(crm: CrmServer) -> None:
    crm.admin("faults", {"kind": "malformed", "count": 1})
    response = crm.api("GET", "/api/link/companies")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.content.startswith(b"[{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert len(ok(crm.api("GET", "/api/link/companies"))) == 40


def test_stats(crm: CrmServer) -> None:
    crm.api("GET", "/api/page/contacts", params={"per_page": 10})
    crm.api("GET", "/api/cursor/invoices", params={"limit": 7})
    crm.client.get("/api/page/contacts")  # 401
    crm.api("GET", "/api/contacts/99999")  # 404
    _token(crm)
    crm.client.get("/health")  # not an /api request
    assert crm.admin_get("stats") == {
        "requests": 4,
        "by_status": {"200": 2, "401": 1, "404": 1},
        "records_served": 17,
        "token_requests": 1,
    }
    assert crm.admin("stats/reset")["requests"] == 0
    assert crm.admin_get("stats") == {
        "requests": 0,
        "by_status": {},
        "records_served": 0,
        "token_requests": 0,
    }


# --- writes ------------------------------------------------------------------------------------------------


def test_create_get_patch_put_delete(crm: CrmServer) -> None:
    newest = everything(crm, "contacts")[-1]["updated_at"]
    response = crm.api("POST", "/api/contacts", json={"first_name": "Zoë", "last_name": "Neu", "id": 5})
    assert response.status_code == 201
    created = response.json()
    assert created["id"] == 251 and created["first_name"] == "Zoë" and created["email"] is None
    assert list(created) == FIELDS["contacts"]
    assert created["updated_at"] > newest and created["created_at"] == created["updated_at"]
    assert ok(crm.api("GET", "/api/contacts/251")) == created

    patched = ok(crm.api("PATCH", "/api/contacts/251", json={"email": "zoe@example.com"}))
    assert patched["first_name"] == "Zoë" and patched["email"] == "zoe@example.com"
    assert patched["updated_at"] > created["updated_at"]  # strictly newer, even within the same second

    original = ok(crm.api("GET", "/api/contacts/1"))
    replaced = ok(crm.api("PUT", "/api/contacts/1", json={"first_name": "Jürgen"}))
    assert replaced["first_name"] == "Jürgen" and replaced["last_name"] is None
    assert replaced["created_at"] == original["created_at"] and replaced["updated_at"] > patched["updated_at"]
    response = crm.api("PUT", "/api/invoices/5000", json={"amount": 12.5, "status": "open"})
    assert response.status_code == 201
    assert response.json()["amount"] == "12.50" and response.json()["id"] == 5000
    assert crm.api("POST", "/api/invoices", json={}).json()["id"] == 5001

    assert crm.api("DELETE", "/api/contacts/251").status_code == 204
    assert crm.api("GET", "/api/contacts/251").status_code == 404
    assert crm.api("DELETE", "/api/contacts/251").status_code == 404
    assert crm.api("PATCH", "/api/contacts/251", json={}).status_code == 404
    assert len(everything(crm, "contacts")) == 250


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/api/contacts", {"nickname": "x"}, "nickname"),
        ("PATCH", "/api/contacts/1", {"company_id": "many"}, "company_id"),
        ("PUT", "/api/invoices/1", {"amount": "a lot"}, "amount"),
        ("POST", "/api/invoices", {"status": "void"}, "status"),
        ("POST", "/api/companies", ["not", "an", "object"], "JSON object"),
        ("PUT", "/api/companies/0", {}, "ids start at 1"),
    ],
)
def test_invalid_writes(crm: CrmServer, method: str, path: str, body: Any, message: str) -> None:
    response = crm.api(method, path, json=body)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_incremental_sync_sees_writes(crm: CrmServer) -> None:
    companies = everything(crm, "companies")
    cursor = companies[-1]["updated_at"]  # what an inclusive incremental sync would store
    ok(crm.api("PATCH", "/api/companies/3", json={"country": "DK"}))
    crm.api("PUT", "/api/companies/77", json={"name": "Ørsted Nord"})
    crm.api("DELETE", "/api/companies/4")
    since = walk(crm, "cursor", "companies", 2, since=cursor)
    at_cursor = [c["id"] for c in companies if c["updated_at"] == cursor and c["id"] not in (3, 4)]
    assert [c["id"] for c in since] == [*at_cursor, 3, 77]
    assert since[-2]["country"] == "DK" and since[-1]["name"] == "Ørsted Nord"
    crm.reset()
    assert order(everything(crm, "companies")) == order(companies)


# --- inbound sink and webhooks -----------------------------------------------------------------------------


def test_inbound_sink(crm: CrmServer) -> None:
    assert crm.client.post("/inbound/orders?batch=1", json={"order": "Größe"}).status_code == 202
    assert crm.client.put("/inbound/orders", content=b"\x00\xff\x10").status_code == 202
    first, second = crm.admin_get("inbound/orders")
    assert first["method"] == "POST" and first["query"] == "batch=1"
    assert first["json"] == {"order": "Größe"} and first["body_encoding"] == "utf-8"
    assert first["headers"]["content-type"] == "application/json"
    assert second["body_encoding"] == "base64" and base64.b64decode(second["body"]) == b"\x00\xff\x10"
    assert crm.admin_get("inbound/elsewhere") == []

    crm.admin("inbound/flaky/responses", {"statuses": [503, 429]})
    codes = [crm.client.post("/inbound/flaky", content=b"x").status_code for _ in range(3)]
    assert codes == [503, 429, 202]
    assert [e["status"] for e in crm.admin_get("inbound/flaky")] == [503, 429, 202]
    assert crm.admin("inbound/flaky", method="DELETE") == {"cleared": 3}


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _verify(scheme: str, secret: str, entry: dict[str, Any]) -> None:
    """Check a received delivery the way a receiver would, independently of crm_app's signing code."""
    headers, body = entry["headers"], entry["body"].encode()
    if scheme == "standard":
        key = (
            base64.b64decode(secret.removeprefix("whsec_"))
            if secret.startswith("whsec_")
            else secret.encode()
        )
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        assert headers["webhook-signature"] == "v1," + base64.b64encode(_hmac(key, signed)).decode()
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    elif scheme == "github":
        assert headers["x-hub-signature-256"] == "sha256=" + _hmac(secret.encode(), body).hex()
    elif scheme == "stripe":
        parts = dict(part.split("=", 1) for part in headers["stripe-signature"].split(","))
        assert parts["v1"] == _hmac(secret.encode(), f"{parts['t']}.".encode() + body).hex()
    else:
        assert headers["x-shared-token"] == secret


MSG_ID_HEADER = {
    "standard": "webhook-id",
    "github": "x-github-delivery",
    "stripe": "idempotency-key",
    "header": "x-webhook-id",
}


@pytest.mark.parametrize(
    ("scheme", "secret"),
    [
        ("standard", "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()),
        ("standard", "plain-secret"),
        ("github", "gh-secret"),
        ("stripe", "whsec_stripe_style_secret"),
        ("header", "shared-token-value"),
    ],
)
def test_admin_webhook_send(crm: CrmServer, scheme: str, secret: str) -> None:
    payload = {"type": "invoice.paid", "data": {"id": 7, "customer": "Jürgen"}}
    result = crm.admin(
        "webhooks/send",
        {
            "url": f"{crm.url}/inbound/hooks",
            "secret": secret,
            "scheme": scheme,
            "payload": payload,
            "msg_id": "msg_fixed_1",
            "header_name": "X-Shared-Token",
        },
    )
    assert result == {"status": 202, "msg_id": "msg_fixed_1", "error": None}
    (entry,) = crm.admin_get("inbound/hooks")
    assert entry["json"] == payload
    assert entry["headers"][MSG_ID_HEADER[scheme]] == "msg_fixed_1"
    _verify(scheme, secret, entry)
    assert crm.admin_get("webhooks/log")[-1]["status"] == 202


def test_admin_webhook_send_to_nowhere(crm: CrmServer) -> None:
    result = crm.admin(
        "webhooks/send",
        {"url": "http://127.0.0.1:9/hook", "secret": "s", "timestamp": 1_600_000_000},
    )
    assert (
        result["status"] is None and result["msg_id"].startswith("msg_") and "ConnectError" in result["error"]
    )
    with pytest.raises(httpx.HTTPStatusError, match="whsec_ secret must continue with base64"):
        crm.admin("webhooks/send", {"url": f"{crm.url}/inbound/x", "secret": "whsec_not*base64"})


def _wait_for(fetch: Callable[[], list[Any]], count: int, timeout: float = 5.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = fetch()
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def _wait_until_delivered(crm: CrmServer, timeout: float = 10.0) -> None:
    """Until the CRM has no event delivery still sending or waiting to retry (emitted by a write before
    it answers, so after the writes this covers every event they caused)."""
    deadline = time.monotonic() + timeout
    while crm.admin_get("webhooks/pending")["pending"]:
        assert time.monotonic() < deadline, "event deliveries still pending"
        time.sleep(0.05)


def test_subscription_events(crm: CrmServer) -> None:
    sub = {"url": f"{crm.url}/inbound/events", "secret": "whsec_c2VjcmV0LWtleQ==", "scheme": "standard"}
    assert crm.client.post("/api/webhooks/subscriptions", json={**sub, "events": ["*"]}).status_code == 401
    response = crm.api("POST", "/api/webhooks/subscriptions", json={**sub, "events": ["contact.updated"]})
    assert response.status_code == 201
    assert "secret" not in response.json() and response.json()["id"].startswith("sub_")
    crm.api("POST", "/api/webhooks/subscriptions", json={**sub, "events": ["invoice.*"], "scheme": "github"})
    assert len(ok(crm.api("GET", "/api/webhooks/subscriptions"))) == 2

    crm.api("POST", "/api/contacts", json={"first_name": "no event"})  # contact.created: not subscribed
    patched = ok(crm.api("PATCH", "/api/contacts/5", json={"phone": "+45 1234"}))
    crm.api("DELETE", "/api/invoices/9")
    _wait_until_delivered(crm)  # every event of these writes has been sent: nothing else can arrive
    entries = crm.admin_get("inbound/events")
    assert len(entries) == 2
    by_type = {e["json"]["type"]: e for e in entries}
    assert set(by_type) == {"contact.updated", "invoice.deleted"}
    event = by_type["contact.updated"]["json"]
    assert event["data"] == patched and TS.match(event["occurred_at"])
    assert by_type["contact.updated"]["headers"]["webhook-id"] == event["id"]
    _verify("standard", sub["secret"], by_type["contact.updated"])
    assert by_type["invoice.deleted"]["json"]["data"]["id"] == 9
    _verify("github", sub["secret"], by_type["invoice.deleted"])

    sub_id = response.json()["id"]
    assert crm.api("DELETE", f"/api/webhooks/subscriptions/{sub_id}").status_code == 204
    assert crm.api("DELETE", f"/api/webhooks/subscriptions/{sub_id}").status_code == 404


def test_subscription_retries(crm: CrmServer) -> None:
    crm.admin("inbound/retry/responses", {"statuses": [500, 503]})
    crm.api(
        "POST",
        "/api/webhooks/subscriptions",
        json={"url": f"{crm.url}/inbound/retry", "secret": "s", "scheme": "stripe", "events": ["company.*"]},
    )
    crm.api("PUT", "/api/companies/1", json={"name": "Acme A/S"})
    log = _wait_for(lambda: crm.admin_get("webhooks/log"), 3)
    assert [(e["attempt"], e["status"]) for e in log] == [(1, 500), (2, 503), (3, 202)]
    assert len({e["msg_id"] for e in log}) == 1 and log[0]["event_type"] == "company.updated"
    deliveries = crm.admin_get("inbound/retry")
    assert len({d["body"] for d in deliveries}) == 1  # the same event each time
    for delivery in deliveries:
        _verify("stripe", "s", delivery)


def test_subscription_gives_up_after_three_retries(crm: CrmServer) -> None:
    crm.admin("inbound/down/responses", {"statuses": [500] * 10})
    crm.api("POST", "/api/webhooks/subscriptions", json={"url": f"{crm.url}/inbound/down", "secret": "s"})
    crm.api("DELETE", "/api/contacts/2")
    _wait_until_delivered(crm, timeout=30)  # the last attempt was made: no fifth can follow
    log = crm.admin_get("webhooks/log")
    assert [e["attempt"] for e in log] == [1, 2, 3, 4]
    assert all(e["status"] == 500 for e in log)


# --- the pure helpers, without the server -------------------------------------------------------------------


def test_signatures_match_published_examples(crm_app: ModuleType) -> None:
    # The Standard Webhooks reference libraries' test vector.
    assert (
        crm_app.sign_standard(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
    # GitHub's documented example ("Validating webhook deliveries").
    assert (
        crm_app.sign_github("It's a Secret to Everybody", b"Hello, World!")
        == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    stripe = crm_app.sign_stripe("sk", 1700000000, b"{}")
    assert stripe == "t=1700000000,v1=" + hmac.new(b"sk", b"1700000000.{}", hashlib.sha256).hexdigest()
    with pytest.raises(ValueError, match="unknown webhook scheme"):
        crm_app.webhook_headers("svix", "s", "m", b"", 0)


def test_cursor_roundtrip(crm_app: ModuleType) -> None:
    cursor = crm_app.encode_cursor("2026-01-05T10:00:00Z", 42)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert crm_app.decode_cursor(cursor) == ("2026-01-05T10:00:00Z", 42)
    bad = [
        "",
        "!!",
        base64.urlsafe_b64encode(b'{"u": "x", "i": 1}').decode(),
        base64.urlsafe_b64encode(b'{"u": "2026-01-05T10:00:00Z", "i": "1"}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
    ]
    for cursor in bad:
        with pytest.raises(ValueError, match="invalid cursor"):
            crm_app.decode_cursor(cursor)


def test_token_bucket(crm_app: ModuleType) -> None:
    bucket = crm_app.TokenBucket(2, now=100.0)
    assert [bucket.acquire(100.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert bucket.acquire(100.25) == pytest.approx(0.25)
    assert bucket.acquire(100.5) == 0.0
    assert bucket.acquire(200.0) == 0.0 and bucket.tokens == 1.0  # refills only up to the burst size


def test_seeding_is_deterministic(crm_app: ModuleType) -> None:
    anchor = 1_767_225_600  # 2026-01-01T00:00:00Z
    first = crm_app.seed_records("invoices", 50, anchor=anchor, seed=7)
    assert first == crm_app.seed_records("invoices", 50, anchor=anchor, seed=7)
    assert first != crm_app.seed_records("invoices", 50, anchor=anchor, seed=8)
    assert all(r["created_at"] <= r["updated_at"] < "2026-01-01T00:00:00Z" for r in first)
    assert crm_app.since_key("2026-01-05T10:00:00.001+00:00") == "2026-01-05T10:00:01Z"
    assert crm_app.since_key("2026-01-05T11:00:00 01:00") == "2026-01-05T10:00:00Z"  # "+" sent unencoded
    # How fast seeding is belongs to benchmarks/demo_seed.py; here only what it produces.
    contacts = crm_app.seed_records("contacts", 100_000, anchor=anchor)
    assert len(contacts) == 100_000 and contacts[-1]["id"] == 100_000


def test_command_line_flags() -> None:
    server = start_crm_server(
        contacts=7,
        companies=2,
        invoices=0,
        anchor="2026-01-01T00:00:00Z",
        api_key="k2",
        basic_user="",  # disables basic auth
        extra_args=["--latency-ms", "1", "--error-rate", "0"],
    )
    try:
        body = ok(server.api("GET", "/api/page/contacts"))
        assert body["meta"]["total"] == 7 and server.api_headers == {"X-API-Key": "k2"}
        assert max(c["updated_at"] for c in body["data"]["items"]) < "2026-01-01T00:00:00Z"
        assert ok(server.api("GET", "/api/page/invoices"))["data"]["items"] == []
        assert server.admin_get("config")["latency_ms"] == 1.0
        basic = httpx.BasicAuth("", "demo-password")
        assert server.client.get("/api/page/contacts", auth=basic).status_code == 401
        assert (
            server.client.get("/api/page/contacts", headers={"X-API-Key": "demo-api-key"}).status_code == 401
        )
    finally:
        server.stop()
    assert server.proc.poll() is not None and not server.tmpdir.exists()
