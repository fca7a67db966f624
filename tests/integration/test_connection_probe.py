"""The "test connection" probes against real servers (the demo CRM, the test sshd, PostgreSQL), with Airflow
``Connection`` objects shaped as the credentials endpoint writes them: ok when the credentials work, a
reason without the secret when they do not, and the SSRF policy applied before any packet is sent."""

from __future__ import annotations

import base64
import ipaddress
import json

import pytest
from airflow.models.connection import Connection

from b2b_integrations.instances.probe import probe
from crm_server import CrmServer
from helpers import PG
from sshd import SshServer

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


def _http(url: str, login: str | None, password: str, **extra: str) -> Connection:
    return Connection(
        conn_id="probe",
        conn_type="http",
        host=url,
        login=login,
        password=password,
        extra=json.dumps(extra) if extra else None,
    )


@pytest.mark.parametrize("kind", ["api_key", "basic", "bearer"])
def test_http_credentials_answered_ok_or_refused_without_the_secret(crm: CrmServer, kind: str) -> None:
    url = f"{crm.url}/api/page/contacts"
    login, good = {
        "api_key": (None, crm.api_key),
        "basic": (crm.basic_user, crm.basic_password),
        "bearer": (None, crm.bearer_token),
    }[kind]
    auth = [{"type": kind}]
    ok = probe(_http(url, login, good), "http", auth, policy=LOOPBACK)
    assert ok.ok, ok.reason
    wrong = f"wrong-{kind}-value"
    refused = probe(_http(url, login, wrong), "http", auth, policy=LOOPBACK)
    assert not refused.ok and "refused the credentials (HTTP 401)" in refused.reason
    assert wrong not in refused.reason and good not in refused.reason


def test_oauth2_token_fetch(crm: CrmServer) -> None:
    auth = [{"type": "oauth2_client_credentials", "token_url": "/oauth/token"}]
    assert probe(_http(crm.url, crm.client_id, crm.client_secret), "http", auth).ok
    refused = probe(_http(crm.url, crm.client_id, "nope-secret"), "http", auth)
    assert not refused.ok and "refused the client id or secret" in refused.reason
    # the token URL from the connection when the template names none
    conn = _http(crm.url, crm.client_id, crm.client_secret, token_url="/oauth/token")
    assert probe(conn, "http", [{"type": "oauth2_client_credentials"}]).ok


def test_the_policy_refuses_before_connecting(crm: CrmServer) -> None:
    for host in (crm.url, "http://169.254.169.254/latest", "http://[::ffff:127.0.0.1]:80"):
        refused = probe(_http(host, None, "k"), "http", [{"type": "api_key"}], policy=())
        assert not refused.ok and refused.reason.startswith("refused:"), refused.reason
        assert "callbacks" not in refused.reason
    gone = probe(_http("http://127.0.0.1:9", None, "k"), "http", [{"type": "api_key"}], policy=LOOPBACK)
    assert not gone.ok and "could not be reached" in gone.reason


def _sftp(sshd: SshServer, **extra: object) -> Connection:
    host_key = (sshd.tmpdir / "host_ed25519.pub").read_text().split()
    fields = {"host_key": f"{host_key[0]} {host_key[1]}", "private_key": sshd.key_file.read_text(), **extra}
    return Connection(
        conn_id="probe",
        conn_type="sftp",
        host=sshd.host,
        port=sshd.port,
        login=sshd.user,
        extra=json.dumps(fields),
    )


def test_sftp_login_and_listing_checks_the_host_key(sshd: SshServer) -> None:
    ok = probe(_sftp(sshd), "sftp", policy=LOOPBACK)
    assert ok.ok and "listed the home folder" in ok.reason, ok.reason
    other = (
        "ssh-ed25519 "
        + base64.b64encode(
            len(b"ssh-ed25519").to_bytes(4, "big") + b"ssh-ed25519" + (32).to_bytes(4, "big") + b"z" * 32
        ).decode()
    )
    spoofed = probe(_sftp(sshd, host_key=other), "sftp")
    assert not spoofed.ok and "host key is not the one given" in spoofed.reason
    nobody = _sftp(sshd)
    nobody.login = "no_such_user_here"
    refused = probe(nobody, "sftp")
    assert not refused.ok and "refused the login" in refused.reason
    assert "PRIVATE KEY" not in refused.reason
    assert not probe(_sftp(sshd), "sftp", policy=()).ok


def test_sql_select_one(pg_db: str) -> None:
    assert probe(Connection(conn_id="probe", uri=f"{PG}/{pg_db}"), "postgres").ok
    missing = probe(Connection(conn_id="probe", uri=f"{PG}/no_such_database_here"), "postgres")
    assert not missing.ok and missing.reason.endswith("could not connect or log in")
