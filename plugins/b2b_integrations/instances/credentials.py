"""Customer-supplied credentials as Airflow connections (pure: no database, no network).

A customer fills a connection slot of its instance with one *kind* of credential (``CREDENTIAL_KINDS``);
``parse`` checks every field and turns it into the connection our hooks read:

* ``api_key``: http, host = the base URL, password = the key (the template's step ``auth.header`` names
  the header it goes in, so the customer's ``header`` is checked against it, not stored);
* ``basic``: http, host = the base URL, login, password;
* ``oauth2_client_credentials``: http, host = the base URL, login = client id, password = secret, extra
  ``token_url`` (read by ``clients/http_api.py`` when the template's step names none) and ``scope``;
* ``sftp_password`` / ``sftp_key``: sftp, host, port, login, password or extra ``private_key``, and the
  server's ``host_key`` (required: a customer's server is never trusted on first use).

Why nothing else goes into an http connection's extra: the http provider's ``HttpHook`` sends every extra
key it does not know as a request header. The kind is kept in the connection's description instead.

Every refusal names customer, integration, slot and field, never a value of a secret field.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from b2b_integrations.config.references import iter_references
from b2b_integrations.net.addresses import AddressRefused, IPNetwork, literal_address, refusal

CONN_ID_PREFIX = "b2b_"
MAX_CONN_ID = 250  # Airflow's connection.conn_id column
MAX_URL = 2048
MAX_NAME = 256
MAX_SECRET = 4096
MAX_PRIVATE_KEY = 16384
HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")  # an HTTP header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DESCRIPTION = re.compile(r"^b2b-integrations credentials \((?P<kind>[a-z0-9_]+)\)")


@dataclass(frozen=True)
class KindSpec:
    conn_type: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    secret: tuple[str, ...] = ()
    auth_types: tuple[str, ...] = ()
    """The template step auth types this kind serves (http kinds)."""


CREDENTIAL_KINDS: dict[str, KindSpec] = {
    "api_key": KindSpec("http", ("base_url", "key"), ("header",), ("key",), ("api_key", "bearer")),
    "basic": KindSpec("http", ("base_url", "login", "password"), (), ("password",), ("basic",)),
    "oauth2_client_credentials": KindSpec(
        "http",
        ("base_url", "client_id", "client_secret"),
        ("token_url", "scope"),
        ("client_secret",),
        ("oauth2_client_credentials",),
    ),
    "sftp_password": KindSpec("sftp", ("host", "username", "password", "host_key"), ("port",), ("password",)),
    "sftp_key": KindSpec(
        "sftp",
        ("host", "username", "private_key", "host_key"),
        ("port", "passphrase"),
        ("private_key", "passphrase"),
    ),  # fmt: skip
}
SECRET_FIELDS = frozenset(f for spec in CREDENTIAL_KINDS.values() for f in spec.secret)


class CredentialRefused(ValueError):
    """A credential the customer sent cannot be used; the message names where and which field."""

    def __init__(self, where: str, field_name: str | None, reason: str) -> None:
        self.field_name = field_name
        super().__init__(f"{where}: {field_name + ': ' if field_name else ''}{reason}")


@dataclass(frozen=True)
class ConnectionFields:
    """What goes into the Airflow connection (the secret ones included: handle with care)."""

    conn_id: str
    conn_type: str
    kind: str
    description: str
    host: str
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


def conn_id_for(customer: str, integration: str, slot: str) -> str:
    """``b2b_<customer>__<integration>__<slot>``: the ids are lower_snake_case with single underscores, so
    the double ones make the id unambiguous, and the prefix keeps it apart from engineers' connections."""
    conn_id = f"{CONN_ID_PREFIX}{customer}__{integration}__{slot}"
    if len(conn_id) > MAX_CONN_ID:
        raise CredentialRefused(f"{customer}/{integration}/{slot}", None, "the connection id is too long")
    return conn_id


def is_managed(conn_id: str | None, customer: str, integration: str, slot: str) -> bool:
    """Whether ``conn_id`` is the connection this endpoint writes for that slot."""
    return conn_id == f"{CONN_ID_PREFIX}{customer}__{integration}__{slot}"


def kind_of(description: str | None) -> str | None:
    found = _DESCRIPTION.match(description or "")
    return found.group("kind") if found and found.group("kind") in CREDENTIAL_KINDS else None


def slot_auths(template: Any, slot: str) -> list[dict[str, Any]]:
    """The ``auth`` options of every step of ``template`` that uses ``slot`` (references left out: their
    values are only known per customer)."""
    found: list[dict[str, Any]] = []
    for flow in template.flows.values():
        for step in flow.steps:
            options = step.step_options
            for path, name in step.connection_slots():
                if name != slot:
                    continue
                auth = _at(options, (*path[:-1], "auth"))
                if isinstance(auth, dict) and not any(True for _ in iter_references(auth)):
                    found.append(auth)
    return found


def _at(value: Any, path: Sequence[str | int]) -> Any:
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        else:
            return None
    return value


def parse(
    customer: str,
    integration: str,
    slot: str,
    slot_type: str | None,
    body: Mapping[str, Any],
    auths: Sequence[Mapping[str, Any]] = (),
    policy: Sequence[IPNetwork] | None = None,
    accepted: Sequence[str] = (),
) -> ConnectionFields:
    """Check a credentials request and shape its connection.

    ``accepted``: the kinds the slot's type takes (``catalog.CREDENTIAL_TYPES``); ``auths``: the template's
    ``auth`` options for the slot (``slot_auths``); ``policy``: the allowed networks when the SSRF policy
    applies (customer callers), None when it does not (engineers).
    """
    where = f"customer {customer}, integration {integration}, connection slot {slot}"
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in accepted:
        raise CredentialRefused(
            where, "kind", f"must be one of {list(accepted)} for a slot of type {slot_type!r}"
        )
    spec = CREDENTIAL_KINDS[kind]
    allowed = {"kind", *spec.required, *spec.optional}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise CredentialRefused(where, None, f"unknown field(s) {unknown}; {kind} takes {sorted(allowed)}")
    for name in spec.required:
        if body.get(name) in (None, ""):
            raise CredentialRefused(where, name, "is required")
    values = {name: _text(where, name, body[name]) for name in body if name not in ("kind", "port")}
    _check_auth_type(where, kind, spec, auths)
    conn_id = conn_id_for(customer, integration, slot)
    description = f"b2b-integrations credentials ({kind}) for {customer}/{integration}/{slot}"
    if spec.conn_type == "http":
        base_url = _url(where, "base_url", values["base_url"], policy)
        login, password, extra = _http_secrets(where, kind, values, auths, policy)
        return ConnectionFields(conn_id, "http", kind, description, base_url, None, login, password, extra)
    host = _host(where, "host", values["host"], policy)
    port = _port(where, body.get("port", 22))
    extra = {"host_key": _host_key(where, values["host_key"]), "look_for_keys": False}
    if kind == "sftp_key":
        extra["private_key"] = _private_key(where, values["private_key"], values.get("passphrase"))
        if values.get("passphrase"):
            extra["private_key_passphrase"] = values["passphrase"]
    return ConnectionFields(
        conn_id, "sftp", kind, description, host, port, values["username"], values.get("password"), extra
    )


def _http_secrets(
    where: str,
    kind: str,
    values: Mapping[str, str],
    auths: Sequence[Mapping[str, Any]],
    policy: Sequence[IPNetwork] | None,
) -> tuple[str | None, str, dict[str, Any]]:
    """(login, password, extra) of an http connection, as ``clients/http_api.py`` reads them."""
    if kind == "api_key":
        _check_header(where, values.get("header"), auths)
        return None, values["key"], {}
    if kind == "basic":
        return values["login"], values["password"], {}
    extra: dict[str, Any] = {}
    token_url = values.get("token_url")
    if token_url:
        if token_url.startswith("//"):
            raise CredentialRefused(where, "token_url", "give a path (/oauth/token) or a full URL")
        extra["token_url"] = (
            token_url if token_url.startswith("/") else _url(where, "token_url", token_url, policy)
        )
    elif not any(a.get("token_url") for a in auths):
        raise CredentialRefused(
            where, "token_url", "is required: the integration does not say where tokens are issued"
        )
    if values.get("scope"):
        extra["scope"] = values["scope"]
    return values["client_id"], values["client_secret"], extra


def public_view(conn: Any) -> dict[str, Any]:
    """What may be shown of a connection: type, host, port, login; never password or secret extras."""
    host = conn.host or None
    if host and "://" in host:
        host = _without_userinfo(host)
    return {
        "conn_type": conn.conn_type,
        "host": host,
        "port": conn.port,
        "login": conn.login or None,
    }


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


def _text(where: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise CredentialRefused(where, name, "must be a string")
    limit = MAX_PRIVATE_KEY if name == "private_key" else MAX_SECRET if name in SECRET_FIELDS else MAX_URL
    if name in ("login", "username", "client_id", "header", "host"):
        limit = MAX_NAME
    if len(value) > limit:
        raise CredentialRefused(where, name, f"is longer than {limit} characters")
    bad = _CONTROL.sub("", value.replace("\n", "").replace("\r", "")) if name == "private_key" else value
    if _CONTROL.search(bad):
        raise CredentialRefused(where, name, "holds control characters")
    if name not in SECRET_FIELDS and value != value.strip():
        raise CredentialRefused(where, name, "has leading or trailing spaces")
    return value


def _check_auth_type(where: str, kind: str, spec: KindSpec, auths: Sequence[Mapping[str, Any]]) -> None:
    if spec.conn_type != "http":
        return
    used = sorted({str(a.get("type", "none")) for a in auths} - {"none"})
    if used and not set(used) <= set(spec.auth_types):
        fitting = sorted(k for k, s in CREDENTIAL_KINDS.items() if set(used) <= set(s.auth_types))
        raise CredentialRefused(
            where,
            "kind",
            f"the integration authenticates with {used}; send kind {' or '.join(fitting) or '?'}",
        )


def _check_header(where: str, header: str | None, auths: Sequence[Mapping[str, Any]]) -> None:
    if header is None:
        return
    if not _TOKEN.fullmatch(header):
        raise CredentialRefused(where, "header", "is not an HTTP header name")
    expected = {str(a.get("header") or "X-API-Key") for a in auths if a.get("type") == "api_key"}
    if expected and header.lower() not in {h.lower() for h in expected}:
        raise CredentialRefused(
            where, "header", f"the integration sends the key in {sorted(expected)}, not {header!r}"
        )


def _url(where: str, name: str, value: str, policy: Sequence[IPNetwork] | None) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise CredentialRefused(where, name, "is not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise CredentialRefused(where, name, "must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise CredentialRefused(where, name, "must not hold a user or password (use the credential fields)")
    if parts.query or parts.fragment:
        raise CredentialRefused(where, name, "must not have a query or fragment (secrets go in their fields)")
    if port == 0:
        raise CredentialRefused(where, name, "has port 0")
    _host(where, name, parts.hostname or "", policy)
    return value.rstrip("/")


def _host(where: str, name: str, host: str, policy: Sequence[IPNetwork] | None) -> str:
    if not host:
        raise CredentialRefused(where, name, "has no host")
    try:
        address = literal_address(host.strip("[]"))
    except AddressRefused as e:
        raise CredentialRefused(where, name, str(e)) from None
    if address is not None and policy is not None:
        why = refusal(address, policy)
        if why is not None:
            raise CredentialRefused(
                where, name, f"is a {why} address, which customer connections may not use"
            )
    return host


def _port(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise CredentialRefused(where, "port", "must be a whole number from 1 to 65535")
    return value


def _host_key(where: str, value: str) -> str:
    parts = value.split()
    if len(parts) < 2 or parts[0] not in HOST_KEY_TYPES:
        raise CredentialRefused(
            where,
            "host_key",
            f"must be '<type> <base64>' as in known_hosts, type one of {list(HOST_KEY_TYPES)}",
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise CredentialRefused(where, "host_key", "the key is not base64") from None
    if not blob.startswith(len(parts[0]).to_bytes(4, "big") + parts[0].encode()):
        raise CredentialRefused(where, "host_key", f"the key data is not a {parts[0]} key")
    return f"{parts[0]} {parts[1]}"


def _private_key(where: str, text: str, passphrase: str | None) -> str:
    """The key as given, once a reader the SFTP hook uses (paramiko's) has loaded it."""
    if load_private_key(text, passphrase) is None:
        raise CredentialRefused(
            where, "private_key", "is not an Ed25519, ECDSA or RSA private key this passphrase opens"
        )
    return text


def load_private_key(text: str, passphrase: str | None) -> Any:
    """The paramiko key (the classes the provider's ``SSHHook`` tries), or None."""
    import io

    import paramiko

    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase or None)
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    return None


def slot_list(template: Any, settings: Mapping[str, Any]) -> Iterator[tuple[str, Any, str | None]]:
    """(slot, its declaration, the bound connection id) of every slot of the template."""
    bound = settings.get("connections") if isinstance(settings.get("connections"), dict) else {}
    for name, slot in template.connections.items():
        conn_id = bound.get(name)
        yield name, slot, conn_id if isinstance(conn_id, str) else None
