"""Test a connection slot's connection ("test connection"): one short, bounded try, a public answer.

Airflow's own connection test is off by default (``[core] test_connection``) because it runs arbitrary
hooks on the API server; this one does exactly one thing per slot type, each with a short timeout:

* http: a token fetch for OAuth2 client credentials, else a GET of the base URL with the step's auth;
  401/403 means the credentials were refused, any other answer below 500 that they were not;
* sftp/ssh: connect, check the server's host key, log in, list the home folder;
* postgres and other SQL: ``SELECT 1``.

When the SSRF policy applies (a customer testing a connection it supplied), a host is resolved once, every
address checked (``net/addresses.py``) and the connection made to that address, as the sync callback does.
The reason in an answer is built from fixed words, status codes and the host: never a secret, never a
server's text (which may echo what it was sent).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from b2b_integrations.net.addresses import AddressRefused, IPNetwork

TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str


def probe(
    conn: Any,
    slot_type: str | None,
    auths: Sequence[Mapping[str, Any]] = (),
    policy: Sequence[IPNetwork] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> ProbeResult:
    """Test ``conn`` (an Airflow ``Connection``) the way a slot of ``slot_type`` uses it."""
    kind = (slot_type or conn.conn_type or "").lower()
    try:
        if kind in ("http", "https"):
            return _http(conn, auths[0] if auths else {}, policy, timeout)
        if kind in ("sftp", "ssh"):
            return _sftp(conn, policy, timeout)
        if kind in ("postgres", "postgresql", "mysql", "sqlite", "mssql", "sql", "generic_sql"):
            return _sql(conn, timeout)
    except AddressRefused as e:
        # the policy's own wording is about callbacks; the kind of address is what matters here
        return ProbeResult(
            False, f"refused: {str(e).split(', which')[0]}, which customer connections may not use"
        )
    return ProbeResult(False, f"no test for a connection of type {kind!r}")


# ---- http ------------------------------------------------------------------------------------------
def _base_url(conn: Any) -> str:
    host = conn.host or ""
    base = host if "://" in host else f"{conn.schema or 'http'}://{host}"
    return f"{base}:{conn.port}" if conn.port else base


def _http(
    conn: Any, auth: Mapping[str, Any], policy: Sequence[IPNetwork] | None, timeout: float
) -> ProbeResult:
    import httpx

    from b2b_integrations.instances.credentials import kind_of

    base = _base_url(conn)
    extra = conn.extra_dejson
    kind = auth.get("type") or kind_of(getattr(conn, "description", None))
    if not kind:  # an engineer's connection used by no step with auth: judge by what it holds
        kind = "oauth2_client_credentials" if extra.get("token_url") else "basic" if conn.login else "api_key"
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        if kind == "oauth2_client_credentials":
            return _token(client, conn, base, auth, policy)
        headers: dict[str, str] = {}
        basic = None
        if kind == "basic":
            basic = (conn.login or "", conn.password or "")
        elif kind == "bearer":
            headers["Authorization"] = f"Bearer {conn.password or ''}"
        elif kind == "api_key":
            headers[str(auth.get("header") or "X-API-Key")] = conn.password or ""
        status, error = _send(client, "GET", base, policy, headers=headers, auth=basic)
    if error:
        return ProbeResult(False, f"{_shown(base)} {error}")
    if status in (401, 403):
        return ProbeResult(False, f"{_shown(base)} refused the credentials (HTTP {status})")
    if status >= 500:
        return ProbeResult(False, f"{_shown(base)} answered HTTP {status}")
    return ProbeResult(True, f"{_shown(base)} answered HTTP {status} and did not refuse the credentials")


def _token(
    client: Any, conn: Any, base: str, auth: Mapping[str, Any], policy: Sequence[IPNetwork] | None
) -> ProbeResult:
    """OAuth2 client credentials: the token fetch the import step would make first."""
    extra = conn.extra_dejson
    token_url = str(auth.get("token_url") or extra.get("token_url") or "")
    if not token_url:
        return ProbeResult(False, "no token URL: the connection's extra has no token_url")
    url = token_url if "://" in token_url else urljoin(base.rstrip("/") + "/", token_url.lstrip("/"))
    data = {
        "grant_type": "client_credentials",
        "client_id": conn.login or "",
        "client_secret": conn.password or "",
    }
    scope = auth.get("scope") or extra.get("scope")
    if scope:
        data["scope"] = str(scope)
    status, error = _send(client, "POST", url, policy, data=data)
    where = f"the token endpoint {_shown(url)}"
    if error:
        return ProbeResult(False, f"{where} {error}")
    if status in (400, 401, 403):
        return ProbeResult(False, f"{where} refused the client id or secret (HTTP {status})")
    if status != 200:
        return ProbeResult(False, f"{where} answered HTTP {status}")
    return ProbeResult(True, f"{where} issued an access token")


def _send(
    client: Any, method: str, url: str, policy: Sequence[IPNetwork] | None, **kwargs: Any
) -> tuple[int, str | None]:
    """(status, None) or (0, why it failed): a transport failure, named by kind only."""
    import httpx

    target, extensions = url, {}
    if policy is not None:
        from b2b_integrations.sync.callback import pinned_target

        target, host_header, extensions = pinned_target(url, policy)
        kwargs["headers"] = {**kwargs.get("headers", {}), "Host": host_header}
    try:
        response = client.request(method, target, extensions=extensions, **kwargs)
    except httpx.TimeoutException:
        return 0, "did not answer in time"
    except httpx.HTTPError as e:
        return 0, f"could not be reached ({type(e).__name__})"
    return response.status_code, None


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()


# ---- sftp ------------------------------------------------------------------------------------------
def _sftp(conn: Any, policy: Sequence[IPNetwork] | None, timeout: float) -> ProbeResult:
    import paramiko

    from b2b_integrations.instances.credentials import load_private_key

    host, port = conn.host or "", int(conn.port or 22)
    where = f"{host}:{port}"
    extra = conn.extra_dejson
    address = _address(host, port, policy)
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as e:
        return ProbeResult(False, f"{where} could not be reached ({_os_error(e)})")
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = transport.auth_timeout = transport.handshake_timeout = timeout
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        expected = str(extra.get("host_key") or "").split()
        if len(expected) >= 2:
            if (key.get_name(), key.get_base64()) != (expected[0], expected[1]):
                return ProbeResult(False, f"{where}: the server's host key is not the one given (host_key)")
        elif str(extra.get("no_host_key_check", "")).lower() != "true":
            return ProbeResult(
                False, f"{where}: the connection gives no host_key to check the server against"
            )
        pkey = None
        if extra.get("private_key"):
            pkey = load_private_key(str(extra["private_key"]), extra.get("private_key_passphrase"))
        elif extra.get("key_file"):
            pkey = paramiko.PKey.from_path(str(extra["key_file"]), extra.get("private_key_passphrase"))
        if pkey is not None:
            transport.auth_publickey(conn.login or "", pkey)
        else:
            transport.auth_password(conn.login or "", conn.password or "")
        sftp = paramiko.SFTPClient.from_transport(transport)
        if sftp is None:
            return ProbeResult(False, f"{where}: the server offers no SFTP")
        sftp.get_channel().settimeout(timeout)
        entries = len(sftp.listdir("."))
        return ProbeResult(True, f"{where}: logged in and listed the home folder ({entries} entries)")
    except paramiko.AuthenticationException:
        return ProbeResult(False, f"{where}: the server refused the login")
    except (paramiko.SSHException, EOFError) as e:
        return ProbeResult(False, f"{where}: SSH failed ({type(e).__name__})")
    except OSError as e:
        return ProbeResult(False, f"{where}: {_os_error(e)}")
    finally:
        transport.close()


def _address(host: str, port: int, policy: Sequence[IPNetwork] | None) -> str:
    """The address to connect to: under the policy, resolved once and checked (no second lookup)."""
    if policy is None:
        return host
    from b2b_integrations.net.addresses import check_address, check_resolved, literal_address
    from b2b_integrations.sync.callback import resolve_host

    literal = literal_address(host)
    if literal is not None:
        check_address(literal, policy)
        return str(literal)
    try:
        found = resolve_host(host, port)
    except OSError:
        raise AddressRefused(f"{host} cannot be resolved") from None
    return str(check_resolved(host, found, policy))


def _os_error(e: OSError) -> str:
    return "timed out" if isinstance(e, TimeoutError | socket.timeout) else type(e).__name__


# ---- sql -------------------------------------------------------------------------------------------
def _sql(conn: Any, timeout: float) -> ProbeResult:
    where = f"{conn.host or 'the database'}" + (f":{conn.port}" if conn.port else "")
    if conn.conn_type in ("postgres", "postgresql"):
        import psycopg

        try:
            with psycopg.connect(
                host=conn.host or None, port=conn.port or None, user=conn.login or None,
                password=conn.password or None, dbname=conn.schema or None, connect_timeout=max(1, int(timeout)),
            ) as db:  # fmt: skip
                db.execute("SELECT 1").fetchone()
        except psycopg.OperationalError:
            # psycopg's text can quote the connection string; only the fact is shown
            return ProbeResult(False, f"{where}: could not connect or log in")
        except psycopg.Error as e:
            return ProbeResult(False, f"{where}: SELECT 1 failed ({type(e).__name__})")
        return ProbeResult(True, f"{where}: SELECT 1 answered")
    import threading

    outcome: list[ProbeResult] = []

    def run() -> None:
        try:
            conn.get_hook().get_first("SELECT 1")
            outcome.append(ProbeResult(True, f"{where}: SELECT 1 answered"))
        except Exception as e:  # a driver's own error class: only its name is shown
            outcome.append(ProbeResult(False, f"{where}: SELECT 1 failed ({type(e).__name__})"))

    worker = threading.Thread(target=run, daemon=True, name="b2b-connection-test")
    worker.start()
    worker.join(timeout * 2)
    return outcome[0] if outcome else ProbeResult(False, f"{where}: no answer within {timeout * 2:.0f} s")
