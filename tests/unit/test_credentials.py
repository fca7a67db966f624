"""Customer credentials into connections (pure): the shapes our hooks read, and refusals naming the field."""

from __future__ import annotations

import base64
import ipaddress
import subprocess
from pathlib import Path

import pytest

from b2b_integrations.instances.catalog import CREDENTIAL_TYPES
from b2b_integrations.instances.credentials import (
    CredentialRefused,
    conn_id_for,
    kind_of,
    parse,
    public_view,
)

HTTP = CREDENTIAL_TYPES["http"]
SFTP = CREDENTIAL_TYPES["sftp"]
HOST_KEY = (
    "ssh-ed25519 "
    + base64.b64encode(
        len(b"ssh-ed25519").to_bytes(4, "big") + b"ssh-ed25519" + (32).to_bytes(4, "big") + b"k" * 32
    ).decode()
)
OAUTH = [{"type": "oauth2_client_credentials", "token_url": "/oauth/token"}]


def _http(body: dict, auths: list | None = None, policy: tuple = ()) -> object:
    return parse("acme", "crm", "crm_api", "http", body, auths or [], policy=policy, accepted=HTTP)


def test_each_http_kind_becomes_the_connection_the_api_hook_reads() -> None:
    oauth = _http(
        {"kind": "oauth2_client_credentials", "base_url": "https://crm.example.com/", "client_id": "cid",
         "client_secret": "s3cret", "scope": "read"},
        OAUTH,
    )  # fmt: skip
    assert (oauth.conn_id, oauth.conn_type, oauth.host) == (
        "b2b_acme__crm__crm_api",
        "http",
        "https://crm.example.com",
    )
    assert (oauth.login, oauth.password, oauth.extra) == ("cid", "s3cret", {"scope": "read"})
    assert kind_of(oauth.description) == "oauth2_client_credentials"
    key = _http({"kind": "api_key", "base_url": "https://api.example.com/v1", "key": "k-1", "header": "x-api-key"},
                [{"type": "api_key"}])  # fmt: skip
    assert (key.host, key.login, key.password, key.extra) == ("https://api.example.com/v1", None, "k-1", {})
    basic = _http({"kind": "basic", "base_url": "http://h.example", "login": "u", "password": "p"})
    assert (basic.login, basic.password) == ("u", "p")


@pytest.mark.parametrize(
    ("body", "auths", "field", "says"),
    [
        ({"kind": "ftp"}, [], "kind", "must be one of"),
        ({"kind": "basic", "base_url": "http://h.example", "login": "u"}, [], "password", "required"),
        ({"kind": "basic", "base_url": "http://h.example", "login": "u", "password": "p", "x": 1}, [], None, "unknown"),
        ({"kind": "basic", "base_url": "ftp://h.example", "login": "u", "password": "p"}, [], "base_url", "http://"),
        ({"kind": "basic", "base_url": "http://u:p@h.example", "login": "u", "password": "p"}, [], "base_url", "user"),
        ({"kind": "basic", "base_url": "http://h.example/?token=1", "login": "u", "password": "p"}, [], "base_url", "query"),
        ({"kind": "basic", "base_url": "http://0x7f000001/", "login": "u", "password": "p"}, [], "base_url", "non-canonical"),
        ({"kind": "basic", "base_url": "http://h.example", "login": "u\nX-Evil: 1", "password": "p"}, [], "login", "control"),
        ({"kind": "basic", "base_url": "http://h.example", "login": "u" * 300, "password": "p"}, [], "login", "longer"),
        ({"kind": "basic", "base_url": "http://h.example", "login": "u", "password": "p"}, OAUTH, "kind", "oauth2"),
        ({"kind": "api_key", "base_url": "http://h.example", "key": "k", "header": "X-Other"},
         [{"type": "api_key", "header": "X-API-Key"}], "header", "X-API-Key"),
        ({"kind": "oauth2_client_credentials", "base_url": "http://h.example", "client_id": "c",
          "client_secret": "s"}, [], "token_url", "required"),
    ],
)  # fmt: skip
def test_refusals_name_where_and_the_field_never_the_secret(
    body: dict, auths: list, field: str, says: str
) -> None:
    with pytest.raises(CredentialRefused) as refused:
        _http(body, auths)
    assert refused.value.field_name == field
    message = str(refused.value)
    assert message.startswith("customer acme, integration crm, connection slot crm_api")
    assert says in message
    assert "s3cret" not in message and "'p'" not in message


def test_a_customer_may_not_point_a_connection_at_an_internal_address() -> None:
    body = {"kind": "basic", "base_url": "http://127.0.0.1:8080", "login": "u", "password": "p"}
    with pytest.raises(CredentialRefused, match="loopback"):
        _http(body, policy=())
    allowed = (ipaddress.ip_network("127.0.0.1/32"),)
    assert _http(body, policy=allowed).host == "http://127.0.0.1:8080"
    assert _http(body, policy=None).host == "http://127.0.0.1:8080"  # an engineer: no policy


def test_sftp_key_needs_a_key_paramiko_reads_and_the_servers_host_key(tmp_path: Path) -> None:
    key_file = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)], check=True)
    body = {"kind": "sftp_key", "host": "sftp.example", "port": 2222, "username": "acme",
            "private_key": key_file.read_text(), "host_key": HOST_KEY}  # fmt: skip
    fields = parse("acme", "orders", "partner_sftp", "sftp", body, accepted=SFTP)
    assert (fields.conn_type, fields.host, fields.port, fields.login) == (
        "sftp",
        "sftp.example",
        2222,
        "acme",
    )
    assert fields.extra["host_key"] == HOST_KEY and fields.extra["private_key"] == key_file.read_text()
    for bad, field in (
        ({**body, "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n"}, "private_key"),
        ({**body, "host_key": "ssh-ed25519 !!!"}, "host_key"),
        ({**body, "host_key": "ssh-rsa " + HOST_KEY.split()[1]}, "host_key"),
        ({**body, "port": 70000}, "port"),
        ({**body, "host": "sftp.example\r\n"}, "host"),
    ):
        with pytest.raises(CredentialRefused) as refused:
            parse("acme", "orders", "partner_sftp", "sftp", bad, accepted=SFTP)
        assert refused.value.field_name == field
        assert "PRIVATE KEY" not in str(refused.value)


def test_the_public_view_has_no_secret() -> None:
    fields = _http({"kind": "basic", "base_url": "http://h.example", "login": "u", "password": "pw-secret"})
    shown = public_view(fields.__class__(**{**fields.__dict__}))  # same attributes as a Connection
    assert shown == {"conn_type": "http", "host": "http://h.example", "port": None, "login": "u"}
    assert conn_id_for("acme", "crm", "crm_api") == "b2b_acme__crm__crm_api"
