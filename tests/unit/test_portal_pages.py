"""The customer portal's page files as the app serves them (in-process; the browser tests are in
tests/integration/test_portal_e2e.py): strict CSP on every file, frame-ancestors from the setting and
refused when malformed, nothing inline a CSP without 'unsafe-inline' would block, and no HTML sink in the
script that could turn API data into markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from b2b_integrations.api.app import create_app
from b2b_integrations.api.portal import PAGES
from b2b_integrations.instances.credentials import CREDENTIAL_KINDS


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.delenv("B2B_PORTAL_FRAME_ANCESTORS", raising=False)
    return TestClient(create_app())


def _csp(response) -> dict[str, str]:  # noqa: ANN001
    directives = [part.strip() for part in response.headers["content-security-policy"].split(";")]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in directives}


@pytest.mark.parametrize("path", ["/portal/", "/portal/portal.js", "/portal/portal.css"])
def test_every_portal_file_has_a_strict_policy(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    csp = _csp(answer)
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == csp["style-src"] == csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'self'" and csp["base-uri"] == "'none'"
    assert "unsafe" not in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_the_page_names_its_embedding_origins_from_the_setting(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "B2B_PORTAL_FRAME_ANCESTORS", "'self' https://app.example.com https://*.example.org:8443"
    )
    answer = client.get("/portal/")
    assert _csp(answer)["frame-ancestors"] == "'self' https://app.example.com https://*.example.org:8443"
    assert (
        '<meta name="b2b-parent-origins" content="[&quot;&#x27;self&#x27;&quot;, '
        '&quot;https://app.example.com&quot;, &quot;https://*.example.org:8443&quot;]">'
    ) in answer.text


@pytest.mark.parametrize(
    "value",
    [
        "https://a.example.com; script-src *",  # would add a directive
        "https://a.example.com, https://b.example.com",
        "*",
        "javascript:",
        "https://a.example.com/path",
        "'self' 'none'",
        "'unsafe-inline'",
    ],
)
def test_a_malformed_setting_fails_closed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("B2B_PORTAL_FRAME_ANCESTORS", value)
    answer = client.get("/portal/")
    assert answer.status_code == 200
    assert _csp(answer)["frame-ancestors"] == "'none'"
    assert 'content="[]"' in answer.text


def test_only_the_portal_files_are_served(client: TestClient) -> None:
    assert client.get("/portal", follow_redirects=False).headers["location"] == "portal/"
    for name in ("../api/portal.py", "..%2Fapi%2Fportal.py", "missing.js", "index.html", ".hidden"):
        assert client.get(f"/portal/{name}").status_code == 404, name


def test_credential_kinds_are_the_credentials_endpoints_own(client: TestClient) -> None:
    kinds = client.get("/portal/credential-kinds.json").json()
    assert set(kinds) == set(CREDENTIAL_KINDS)
    for kind, spec in CREDENTIAL_KINDS.items():
        assert kinds[kind] == {
            "required": list(spec.required), "optional": list(spec.optional), "secret": list(spec.secret)
        }  # fmt: skip


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style" or "style" in names:
            self.found.append(f"inline style on <{tag}>")
        self.found += [f"{name} on <{tag}>" for name in names if name.startswith("on")]


def test_no_inline_script_or_style_and_no_html_sinks() -> None:
    parser = _Inline()
    parser.feed((PAGES / "index.html").read_text())
    assert parser.found == []
    script = (PAGES / "portal.js").read_text()
    sinks = re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", script)
    assert sinks == []
