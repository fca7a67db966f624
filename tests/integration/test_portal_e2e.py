"""The customer portal in a real browser (Debian's chromium, playwright) against a real Airflow (API server,
scheduler, dag-processor on PostgreSQL) and the demo CRM: activation through the wizard (a wrong value
shown beside its field, fixed, active, the first run in health), the retry of a failed run after the
credentials were fixed, a set-aside message processed again, keyboard-only activation and deactivation,
tenant isolation, the postMessage hand-over to an iframe of an allowed origin, and the 360 px layout.
The setting (templates, customers, stack) is in tests/integration/portal_stack.py.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from portal_stack import CUSTOMER, RIVAL, RIVAL_NAME, WEBHOOK_SECRET, start

from airflow_stack import AirflowStack
from browser import browser, browser_page, screenshot  # noqa: F401
from crm_server import CrmServer
from helpers import pg_rows, send_standard_webhook

pytestmark = pytest.mark.airflow_stack

API = "/b2b/api/v1"


class ParentPage:
    """A page of an embedding SaaS product (or of a stranger): a real HTTP server on loopback answering
    every GET with ``html``. Real, not a playwright route: chromium keeps a page of an address it cannot
    place from framing one on 127.0.0.1, whatever the portal allowed."""

    def __init__(self) -> None:
        self.html = b""
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page.html)))
                self.end_headers()
                self.wfile.write(page.html)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # "localhost", not 127.0.0.1: another origin than the portal's, on the same machine
        self.origin = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def parents() -> Iterator[tuple[ParentPage, ParentPage]]:
    """The SaaS product's page (an allowed frame ancestor) and a stranger's."""
    allowed, stranger = ParentPage(), ParentPage()
    try:
        yield allowed, stranger
    finally:
        allowed.server.shutdown()
        stranger.server.shutdown()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_db: str, parents: tuple[ParentPage, ParentPage]
) -> Iterator[AirflowStack]:
    found = start(
        tmp_path_factory.mktemp("portal"),
        pg_db,
        {"B2B_PORTAL_FRAME_ANCESTORS": f"'self' {parents[0].origin}"},
    )
    try:
        found.wait_for(
            "the rival's DAG parsed",
            lambda: found.sql("SELECT 1 FROM dag WHERE dag_id = 'rivalco__showcase__rows' AND NOT is_stale"),
            timeout=300,
        )
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def admin(stack: AirflowStack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack.token()}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=60, trust_env=False) as client:
        yield client


def _token(admin: httpx.Client, customer: str) -> str:
    answer = admin.post(f"{API}/customers/{customer}/tokens", json={"ttl_seconds": 3600})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def _portal(stack: AirflowStack, token: str) -> str:
    return f"{stack.url}/b2b/portal/#token={token}"


def _new_customer(admin: httpx.Client, name: str) -> str:
    customer = f"{name}_{uuid.uuid4().hex[:6]}"
    answer = admin.post(f"{API}/customers", json={"id": customer, "name": name.title()})
    assert answer.status_code == 201, answer.text
    return customer


def _open(page: Any, url: str, heading: str) -> None:
    page.goto(url)
    page.get_by_role("heading", level=1, name=heading, exact=True).wait_for()


def _card(page: Any, integration: str) -> Any:
    return page.locator("li.card").filter(has=page.get_by_role("heading", name=integration, exact=True))


def _wait_text(page: Any, text: str, timeout: float = 240_000) -> None:
    page.get_by_text(text).first.wait_for(timeout=timeout)


def _described_by(page: Any, selector: str) -> str:
    return str(
        page.eval_on_selector(
            selector,
            "el => (el.getAttribute('aria-describedby') || '').split(' ')"
            ".map(id => document.getElementById(id)?.textContent || '').join(' | ')",
        )
    )


def test_activation_wrong_value_beside_its_field_fixed_active_first_run_in_health(
    stack: AirflowStack,
    admin: httpx.Client,
    crm: CrmServer,
    browser_page: Any,  # noqa: F811 (the fixture imported above)
    pg_db: str,
    tmp_path: Path,
) -> None:
    page = browser_page
    _open(page, _portal(stack, _token(admin, CUSTOMER)), "Integrations for Portal Co")
    assert "#token" not in page.url  # the token left the address bar and the history
    inbox = _card(page, "Inbox")
    assert "your provider sets it up" in inbox.inner_text() and inbox.get_by_role("link").count() == 0
    screenshot(page, "portal-marketplace", tmp_path)
    _card(page, "CRM contacts").get_by_role("link", name="Set up").click()
    page.get_by_role("heading", level=1, name="Set up CRM contacts", exact=True).wait_for()

    page.get_by_label("Page size").fill("5000")
    page.get_by_label("Kind of credentials").select_option("oauth2_client_credentials")
    page.get_by_label("Base URL").fill(crm.url)
    page.get_by_label("Client ID").fill(crm.client_id)
    page.get_by_label("Client secret").fill(crm.client_secret)
    page.get_by_role("button", name="Save").click()

    # The API's problem stands beside the field: named by aria-describedby, the field marked invalid, focused.
    error = page.locator("#cfg-page_size-error")
    error.wait_for()
    assert "1000" in error.inner_text()
    field = page.locator("#cfg-page_size")
    assert field.get_attribute("aria-invalid") == "true"
    assert error.inner_text() in _described_by(page, "#cfg-page_size")
    assert page.evaluate("document.activeElement.id") == "cfg-page_size"
    assert page.get_by_role("alert").inner_text().startswith("Please fix 1 problem")
    screenshot(page, "portal-wizard-error", tmp_path)
    # Nothing was created: the customer still has no instance.
    assert admin.get(f"{API}/customers/{CUSTOMER}/instances").json()["instances"] == []

    field.fill("50")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", level=1, name="CRM contacts", exact=True).wait_for()
    instance = admin.get(f"{API}/customers/{CUSTOMER}/instances/crm_contacts").json()
    assert instance["active"] is True and instance["settings"]["config"]["page_size"] == 50
    assert crm.client_secret not in json.dumps(instance)

    run_now = page.get_by_role("button", name="Run now")
    stack.wait_for("the flow deployed", lambda: run_now.is_enabled(), timeout=240)
    run_now.click()
    _wait_text(page, "Finished successfully")
    # Healthy, or degraded when the CRM sent records the template's schema sets aside: either way it ran.
    page.locator(".health .word", has_text=re.compile("^(Healthy|Degraded)$")).wait_for()
    loaded = pg_rows(pg_db, f"SELECT count(*) FROM crm_contacts WHERE customer_id = '{CUSTOMER}'")[0][0]
    assert loaded > 0
    assert f"{loaded} records loaded in the last 24 hours" in page.locator("section.flow").inner_text()
    screenshot(page, "portal-instance", tmp_path)

    # The saved secret is never echoed back: not into the wizard, not anywhere in the page.
    page.get_by_role("link", name="Change settings").click()
    page.get_by_role("heading", level=1, name="Settings of CRM contacts", exact=True).wait_for()
    assert crm.client_secret not in page.content()
    page.get_by_label("Replace the saved credentials").check()
    assert page.get_by_label("Client secret").input_value() == ""
    assert page.get_by_label("Client secret").get_attribute("type") == "password"


def test_a_failed_run_is_retried_after_the_credentials_are_fixed(
    stack: AirflowStack,
    admin: httpx.Client,
    crm: CrmServer,
    browser_page: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    customer = _new_customer(admin, "retryco")
    path = f"{API}/customers/{customer}/instances/crm_contacts"
    own = f"b2b_{customer}__crm_contacts__crm_api"
    assert admin.put(path, json={"connections": {"crm_api": own}}).status_code == 201
    wrong = {"kind": "oauth2_client_credentials", "base_url": crm.url, "client_id": crm.client_id,
             "client_secret": "not-the-secret"}  # fmt: skip
    assert admin.put(f"{path}/credentials/crm_api", json=wrong).status_code in (200, 201)
    etag = admin.get(path).headers["etag"]
    assert admin.post(f"{path}/activate", headers={"If-Match": etag}).status_code == 200

    page = browser_page
    _open(page, _portal(stack, _token(admin, customer)), "Integrations for Retryco")
    page.get_by_role("link", name="Open").click()
    run_now = page.get_by_role("button", name="Run now")
    stack.wait_for("the flow deployed", lambda: run_now.is_enabled(), timeout=240)
    run_now.click()
    page.locator(".health .word", has_text="Failing").wait_for(timeout=240_000)
    failed = page.locator("li.run-failed").first
    assert "Failed" in failed.inner_text() and "Import contacts" in failed.inner_text()
    screenshot(page, "portal-failing", tmp_path)

    page.get_by_role("link", name="Change settings").click()
    page.get_by_label("Replace the saved credentials").check()
    page.get_by_label("Kind of credentials").select_option("oauth2_client_credentials")
    page.get_by_label("Base URL").fill(crm.url)
    page.get_by_label("Client ID").fill(crm.client_id)
    page.get_by_label("Client secret").fill(crm.client_secret)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", level=1, name="CRM contacts", exact=True).wait_for()

    page.get_by_role("button", name=re.compile("^Retry")).first.click()
    page.locator("li.run-success").wait_for(timeout=240_000)
    assert page.locator("li.run-failed").count() == 0
    page.locator(".health .word", has_text=re.compile("^(Healthy|Degraded)$")).wait_for()
    runs = admin.get(f"{path}/flows/contacts/runs").json()["runs"]
    assert [r["state"] for r in runs] == ["success"]  # the same run, retried: not a new one


def test_a_set_aside_message_is_processed_again_from_the_portal(
    stack: AirflowStack,
    admin: httpx.Client,
    browser_page: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    customer = _new_customer(admin, "replayco")
    path = f"{API}/customers/{customer}/instances/inbox"
    # The signing secret's slot is one only an engineer binds (the marketplace tells the customer so).
    assert admin.put(path, json={"connections": {"webhook_secret": "portal_hooks"}}).status_code == 201
    etag = admin.get(path).headers["etag"]
    assert admin.post(f"{path}/activate", headers={"If-Match": etag}).status_code == 200
    dag_id = f"{customer}__inbox__events"
    stack.wait_for(
        "the webhook flow deployed",
        lambda: stack.sql(f"SELECT 1 FROM dag WHERE dag_id = '{dag_id}' AND NOT is_stale AND NOT is_paused"),
        timeout=240,
    )
    hook = f"{stack.url}/b2b/webhooks/{customer}/inbox/events"
    send_standard_webhook(hook, WEBHOOK_SECRET, {"invoice_id": None, "status": "paid"})  # no key: set aside
    stack.wait_for(
        "the message set aside",
        lambda: admin.get(f"{path}/status").json()["counts"].get("quarantined_messages", 0) >= 1,
        timeout=300,
    )
    runs_before = stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id = '{dag_id}'")[0][0]

    page = browser_page
    _open(page, _portal(stack, _token(admin, customer)), "Integrations for Replayco")
    page.get_by_role("link", name="Open").click()
    page.locator(".health .word", has_text="Degraded").wait_for()
    assert "1 messages set aside" in page.locator("section.flow").inner_text()
    screenshot(page, "portal-set-aside", tmp_path)
    page.get_by_role("button", name="Process set-aside items again").click()
    _wait_text(page, "1 set-aside message(s) sent to be processed again")
    stack.wait_for(
        "a run of the message sent again",
        lambda: stack.sql(f"SELECT count(*) FROM dag_run WHERE dag_id = '{dag_id}'")[0][0] > runs_before,
        timeout=240,
    )


def _tab_to(page: Any, selector: str, limit: int = 80, back: bool = False) -> None:
    """Press Tab (or Shift+Tab) until the focused element matches ``selector``: the keyboard only."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"{selector} never got the focus")


def test_keyboard_only_activation_run_and_deactivation(
    stack: AirflowStack,
    admin: httpx.Client,
    browser_page: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    customer = _new_customer(admin, "keyco")
    page = browser_page
    _open(page, _portal(stack, _token(admin, customer)), "Integrations for Keyco")
    _tab_to(page, 'a[href="#/setup/showcase"]')
    assert page.evaluate("document.activeElement.getAttribute('aria-describedby')") == "card-showcase"
    page.keyboard.press("Enter")
    page.get_by_role("heading", level=1, name="Set up Showcase", exact=True).wait_for()

    _tab_to(page, "#cfg-row_count")
    page.keyboard.press("Control+A")
    page.keyboard.type("4")
    _tab_to(page, "#cfg-region")
    page.keyboard.press("ArrowDown")  # "Choose…" -> eu
    _tab_to(page, "#cfg-include_archived")
    page.keyboard.press("Space")
    _tab_to(page, "#cfg-labels")
    page.keyboard.type("gold\nnorth")
    _tab_to(page, "#cred-partner_api-base_url")
    page.keyboard.type("https://partner.example.com")
    _tab_to(page, "#cred-partner_api-key")
    page.keyboard.type("k-" + uuid.uuid4().hex)
    _tab_to(page, "#save")
    page.keyboard.press("Enter")
    page.get_by_role("heading", level=1, name="Showcase", exact=True).wait_for()
    settings = admin.get(f"{API}/customers/{customer}/instances/showcase").json()["settings"]
    assert settings["config"] == {
        "row_count": 4, "region": "eu", "score_floor": 0.5, "include_archived": True, "labels": ["gold", "north"]
    }  # fmt: skip
    assert settings["active"] is True

    run_now = page.get_by_role("button", name="Run now")
    stack.wait_for("the flow deployed", lambda: run_now.is_enabled(), timeout=240)
    _tab_to(page, "#run-rows")
    page.keyboard.press("Enter")
    _wait_text(page, "Finished successfully")
    assert "4 records loaded" in page.locator("section.flow").inner_text()

    # Deactivation asks first: Escape keeps it on, the confirm button switches it off.
    _tab_to(page, "#toggle")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert page.evaluate("document.activeElement.id") == "confirm-no"
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "toggle"
    assert admin.get(f"{API}/customers/{customer}/instances/showcase").json()["active"] is True
    page.keyboard.press("Enter")
    dialog.wait_for()
    _tab_to(page, "#confirm-yes", back=True)
    page.keyboard.press("Enter")
    page.locator(".health .word", has_text="Paused").wait_for()
    assert admin.get(f"{API}/customers/{customer}/instances/showcase").json()["active"] is False


def _forged(token: str, customer: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = customer
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{edited}.{signature}"


def test_a_customer_token_never_reveals_another_customer(
    stack: AirflowStack,
    admin: httpx.Client,
    browser_page: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    token = _token(admin, CUSTOMER)
    page = browser_page
    _open(page, _portal(stack, token), "Integrations for Portal Co")

    # Editing the page's address: the rival's instance looks exactly like one that does not exist.
    seen = {}
    for name in ("showcase", "no_such_integration", "..%2F..%2Fcustomers%2Frivalco"):
        page.evaluate("h => { window.location.hash = h; }", f"#/instance/{name}")
        page.get_by_role("heading", level=1, name="Not found", exact=True).wait_for()
        seen[name] = page.locator("main").inner_text()
        page.evaluate("() => { window.location.hash = '#/'; }")
        page.get_by_role("heading", level=1, name="Integrations for Portal Co", exact=True).wait_for()
    assert len(set(seen.values())) == 1
    assert RIVAL_NAME not in page.content() and RIVAL not in page.content()

    # Editing ids in the API's URLs with the same token: the rival answers as a customer that does not exist.
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, trust_env=False) as c:
        for template in (
            "/customers/{c}", "/customers/{c}/instances", "/customers/{c}/instances/showcase",
            "/customers/{c}/instances/showcase/status", "/customers/{c}/instances/showcase/credentials",
            "/customers/{c}/instances/showcase/flows/rows/runs", "/customers/{c}/instances/showcase/versions",
        ):  # fmt: skip
            rival = c.get(API + template.format(c=RIVAL))
            nobody = c.get(API + template.format(c="nobody_here"))
            assert rival.status_code == nobody.status_code == 404, template
            assert rival.text.replace(RIVAL, "X") == nobody.text.replace("nobody_here", "X"), template
            assert RIVAL_NAME not in rival.text
        for method, template in (
            ("POST", "/customers/{c}/instances/showcase/deactivate"),
            ("POST", "/customers/{c}/instances/showcase/flows/rows/runs"),
            ("POST", "/customers/{c}/instances/showcase/replay"),
            ("PUT", "/customers/{c}/instances/showcase/credentials/partner_api"),
        ):
            body = (
                {"kind": "api_key", "base_url": "https://x.example.com", "key": "k"}
                if method == "PUT"
                else {}
            )
            rival = c.request(method, API + template.format(c=RIVAL), json=body)
            nobody = c.request(method, API + template.format(c="nobody_here"), json=body)
            assert rival.status_code == nobody.status_code == 404, template
            assert rival.text.replace(RIVAL, "X") == nobody.text.replace("nobody_here", "X"), template
    assert admin.get(f"{API}/customers/{RIVAL}/instances/showcase").json()["active"] is not False

    # A token edited to name the rival is not signed: the page says the session ended, nothing else.
    _open(page, _portal(stack, _forged(token, RIVAL)), "Your session has ended")
    assert RIVAL_NAME not in page.content()


_PARENT_PAGE = """<!doctype html><title>Parent</title>
<iframe id="portal" title="Integrations" src="{portal}" width="800" height="600"></iframe>
<script>
window.addEventListener("message", (event) => {{
  if (event.data && event.data.type === "b2b-portal:ready") {{
    document.getElementById("portal").contentWindow.postMessage(
      {{type: "b2b-portal:token", token: "{token}"}}, "{origin}");
  }}
}});
</script>"""


def test_an_allowed_parent_embeds_the_portal_and_hands_over_the_token(
    stack: AirflowStack,
    admin: httpx.Client,
    browser_page: Any,  # noqa: F811 (the fixture imported above)
    parents: tuple[ParentPage, ParentPage],
) -> None:
    page = browser_page
    html = _PARENT_PAGE.format(
        portal=f"{stack.url}/b2b/portal/", token=_token(admin, CUSTOMER), origin=stack.url
    )
    for parent in parents:
        parent.html = html.encode()
    allowed, stranger = parents
    page.goto(f"{allowed.origin}/app")
    frame = page.frame_locator("#portal")
    frame.get_by_role("heading", level=1, name="Integrations for Portal Co", exact=True).wait_for()

    # Another origin may not frame it (frame-ancestors), so it never gets to post a token either. The
    # parent's load event waits for its frames, so the frame is as loaded as it gets when goto returns.
    page.goto(f"{stranger.origin}/app")
    frames = [f for f in page.frames if f != page.main_frame]
    assert frames and all("Integrations" not in f.content() for f in frames)
    assert not any(f.url.startswith(stack.url) for f in frames)  # chromium's error page stands in its place


def test_the_pages_fit_360_pixels(
    stack: AirflowStack,
    admin: httpx.Client,
    browser: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    customer = _new_customer(admin, "smallco")
    assert admin.put(
        f"{API}/customers/{customer}/instances/showcase",
        json={"config": {"region": "eu", "labels": ["a"]},
              "connections": {"partner_api": f"b2b_{customer}__showcase__partner_api"}},
    ).status_code == 201  # fmt: skip
    context = browser.new_context(viewport={"width": 360, "height": 780})
    try:
        page = context.new_page()
        _open(page, _portal(stack, _token(admin, customer)), "Integrations for Smallco")
        views = [("portal-marketplace-360", "#/", "Integrations for Smallco"),
                 ("portal-wizard-360", "#/setup/crm_contacts", "Set up CRM contacts"),
                 ("portal-instance-360", "#/instance/showcase", "Showcase")]  # fmt: skip
        for name, route, heading in views:
            page.evaluate("h => { window.location.hash = h; }", route)
            page.get_by_role("heading", level=1, name=heading, exact=True).wait_for()
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, name
            # every control lies inside the screen
            boxes = page.eval_on_selector_all(
                "main button, main a.button, main input, main select, main textarea",
                "els => els.filter(e => e.offsetParent).map(e => e.getBoundingClientRect())"
                ".map(r => [r.left, r.right])",
            )
            assert boxes and all(left >= 0 and right <= 360 for left, right in boxes), name
            screenshot(page, name, tmp_path)
    finally:
        context.close()
