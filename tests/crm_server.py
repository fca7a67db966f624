"""The demo CRM (``include/demo/crm_app.py``) as a real HTTP server on a free loopback port.

``start_crm_server()`` runs the app with uvicorn in a subprocess (this interpreter, the script by path,
settings as command-line flags) and waits until ``GET /health`` answers; ``CrmServer.stop()`` ends it. A
subprocess, not a thread: the server gets its own event loop and GIL, as a real third-party API would, so
client-side timings and timeouts mean what they say.

The server's log goes to ``<tempdir>/crm.log``, never to a pipe: nobody reads a pipe while the tests run, and
a full one would block the server.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from servers import free_port, wait_until_answers

APP = Path(__file__).resolve().parent.parent / "include" / "demo" / "crm_app.py"
START_TIMEOUT = 20.0


@dataclass
class CrmServer:
    url: str  # e.g. "http://127.0.0.1:43123", no trailing slash
    host: str
    port: int
    api_key: str
    bearer_token: str
    basic_user: str
    basic_password: str
    client_id: str
    client_secret: str
    proc: subprocess.Popen[bytes]
    tmpdir: Path
    log_file: Path
    _client: httpx.Client | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def api_headers(self) -> dict[str, str]:
        """Headers that authenticate an ``/api`` request (the API key)."""
        return {"X-API-Key": self.api_key}

    @property
    def client(self) -> httpx.Client:
        """A keep-alive client with ``base_url`` set and no auth (add ``headers=server.api_headers``)."""
        if self._client is None:
            # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback traffic.
            self._client = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)
        return self._client

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated request to ``path`` (e.g. ``/api/page/contacts``); the response, whatever its status."""
        headers = {**self.api_headers, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def admin(self, path: str, json: Any = None, *, method: str = "POST") -> Any:
        """Call an admin endpoint (``"config"`` means ``/admin/config``) and return its JSON (None if empty).

        :raises httpx.HTTPStatusError: on a 4xx/5xx answer, with the server's explanation in the message.
        """
        if not path.startswith("/"):
            path = f"/admin/{path}"
        response = self.client.request(method, path, json=json)
        if response.is_error:
            raise httpx.HTTPStatusError(
                f"{method} {path} -> {response.status_code}: {response.text}",
                request=response.request,
                response=response,
            )
        return response.json() if response.content else None

    def admin_get(self, path: str) -> Any:
        """GET an admin endpoint, e.g. ``"stats"``, ``"inbound/orders"``, ``"webhooks/log"``."""
        return self.admin(path, method="GET")

    def reset(self) -> None:
        """Restore the seeded data, config, faults, stats, subscriptions and inbound sinks."""
        self.admin("reset")

    def log(self) -> str:
        """The server's log so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        """Stop the server and remove the temp dir. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._client is not None:
            self._client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def start_crm_server(
    *,
    contacts: int = 250,
    companies: int = 40,
    invoices: int = 300,
    seed: int = 42,
    anchor: str | None = None,
    api_key: str = "demo-api-key",
    bearer_token: str = "demo-bearer-token",
    basic_user: str = "demo",
    basic_password: str = "demo-password",
    client_id: str = "demo-client",
    client_secret: str = "demo-secret",
    token_ttl: int = 3600,
    access_log: bool = True,
    extra_args: Sequence[str] = (),
    host: str = "127.0.0.1",
    timeout: float = START_TIMEOUT,
    attempts: int = 3,
) -> CrmServer:
    """Start the demo CRM and wait until it answers.

    :param anchor: ISO time the seeded dates lie before (default: today 00:00 UTC, the app's default).
    :param access_log: False for benchmarks: no log line per request.
    :param extra_args: more flags for ``crm_app.py``, e.g. ``["--latency-ms", "20"]``.
    """
    settings = {
        "--contacts": contacts,
        "--companies": companies,
        "--invoices": invoices,
        "--seed": seed,
        "--api-key": api_key,
        "--bearer-token": bearer_token,
        "--basic-user": basic_user,
        "--basic-password": basic_password,
        "--client-id": client_id,
        "--client-secret": client_secret,
        "--token-ttl": token_ttl,
        **({"--anchor": anchor} if anchor else {}),
    }
    flags = [str(part) for flag, value in settings.items() for part in (flag, value)]
    if not access_log:
        flags.append("--no-access-log")
    tmpdir = Path(tempfile.mkdtemp(prefix="b2b-crm-"))
    log_file = tmpdir / "crm.log"
    try:
        for attempt in range(1, attempts + 1):
            # The port is free now, but something may take it before uvicorn binds: retry with another.
            port = free_port(host)
            url = f"http://{host}:{port}"
            with log_file.open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, str(APP), "--host", host, "--port", str(port), *flags, *extra_args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    start_new_session=True,  # Ctrl-C on the test run goes to pytest, not straight to the app
                )
            try:
                wait_until_answers(proc, f"{url}/health", log_file, timeout, "the demo CRM")
            except RuntimeError:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if attempt < attempts and "address already in use" in log_file.read_text(errors="replace"):
                    continue
                raise
            server = CrmServer(
                url=url,
                host=host,
                port=port,
                api_key=api_key,
                bearer_token=bearer_token,
                basic_user=basic_user,
                basic_password=basic_password,
                client_id=client_id,
                client_secret=client_secret,
                proc=proc,
                tmpdir=tmpdir,
                log_file=log_file,
            )
            atexit.register(server.stop)  # a crashed test session must not leave the server running
            return server
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
