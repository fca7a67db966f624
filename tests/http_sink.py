"""A real HTTP server standing in for Slack's API and for a customer's upload endpoint; it keeps what it gets.

``start_http_sink()`` runs this file with uvicorn in a subprocess (as ``tests/crm_server.py`` does for the
demo CRM: its own event loop and GIL, as a real server would have) and waits until it answers. Routes:

- ``POST /api/files.getUploadURLExternal`` (form ``filename``, ``length``) -> ``{"ok", "upload_url",
  "file_id"}``; ``POST /slack-upload/{file_id}`` takes the bytes; ``POST /api/files.completeUploadExternal``
  (form ``files`` as JSON, ``channel_id``, ``initial_comment``) -> ``{"ok", "files"}``. The bot token must
  be ``Authorization: Bearer <slack_token>``, else ``{"ok": false, "error": "invalid_auth"}`` (HTTP 200, as
  Slack does); channel ``CMISSING`` answers ``channel_not_found``.
- ``POST /hooks/<webhook_path>``: a Slack incoming webhook (JSON with ``text``) -> ``ok``.
- anything else, ``POST``/``PUT``: an upload endpoint (multipart form or raw body) -> 201 ``{"id"}``. It
  honours ``Idempotency-Key``: a key that already stored an upload is answered 200 ``{"id", "replayed":
  true}`` and stores nothing. With ``/_sink/config {"upload_auth": value}`` it wants that exact
  ``Authorization`` header and answers 401 *echoing the header it got*, as careless servers do.
- ``/_sink/requests`` (GET: every request, oldest first), ``/_sink/fail`` (POST ``{"count", "status",
  "path_prefix"}``: the next matching requests fail), ``/_sink/config``, ``/_sink/reset``,
  ``/_sink/health``.

Bodies are written to files under the storage folder; the log entry has their path, size and sha256.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from servers import free_port, wait_until_answers

START_TIMEOUT = 20.0
_CHANNEL = re.compile(r"^C[A-Z0-9]+$")


# ----------------------------------------------------------------------------------------- the server app


@dataclass
class _State:
    storage: Path
    slack_token: str
    webhook_path: str
    upload_auth: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)  # (status, path prefix)
    slack_files: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)  # key -> upload id
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class _SinkApp:
    """The routes; each method one kind of request."""

    def __init__(self, state: _State) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        if request.url.path.startswith("/_sink/"):
            return await self.admin(request)
        entry: dict[str, Any] = {
            "seq": len(self.state.log) + 1,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        self.state.log.append(entry)
        status = self.injected(request.url.path)
        if status is not None:
            await self.save_stream(request, entry)
            entry.update(status=status, kind="injected")
            return PlainTextResponse("sink: injected failure", status_code=status)
        response = await self.route(request, entry)
        entry["status"] = response.status_code
        return response

    async def route(self, request: Request, entry: dict[str, Any]) -> Response:
        path = request.url.path
        for prefix, kind, handler in (
            ("/api/", "slack_api", self.slack_api),
            ("/slack-upload/", "slack_upload", self.slack_upload),
            ("/hooks/", "webhook", self.webhook),
        ):
            if path.startswith(prefix):
                entry["kind"] = kind
                return await handler(request, entry, path.removeprefix(prefix))
        entry["kind"] = "upload"
        return await self.upload(request, entry)

    def injected(self, path: str) -> int | None:
        for index, (status, prefix) in enumerate(self.state.failures):
            if path.startswith(prefix):
                del self.state.failures[index]
                return status
        return None

    async def save_stream(self, request: Request, entry: dict[str, Any]) -> None:
        path = self.state.storage / f"body-{entry['seq']}"
        digest, size = hashlib.sha256(), 0
        with path.open("wb") as out:
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        entry.update(body_path=str(path), body_size=size, body_sha256=digest.hexdigest())

    async def save_form(self, request: Request, entry: dict[str, Any]) -> None:
        form = await request.form()
        entry["form"], entry["files"] = {}, {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                entry["form"][key] = value
                continue
            path = self.state.storage / f"body-{entry['seq']}-{key}"
            digest, size = hashlib.sha256(), 0
            with path.open("wb") as out:
                while chunk := await value.read(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            entry["files"][key] = {
                "filename": value.filename,
                "content_type": value.content_type,
                "path": str(path),
                "size": size,
                "sha256": digest.hexdigest(),
            }

    async def slack_api(self, request: Request, entry: dict[str, Any], method: str) -> Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            fields = dict(await request.json())
        else:
            fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        entry["form"] = fields
        if request.headers.get("authorization") != f"Bearer {self.state.slack_token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if method == "files.getUploadURLExternal":
            return self.upload_ticket(request, fields)
        if method == "files.completeUploadExternal":
            return self.complete_upload(fields)
        return JSONResponse({"ok": False, "error": "unknown_method"})

    def upload_ticket(self, request: Request, fields: dict[str, Any]) -> Response:
        if not fields.get("filename") or not str(fields.get("length", "")).isdigit():
            return JSONResponse({"ok": False, "error": "invalid_arguments"})
        file_id = f"F{next(self.state.counter):06d}"
        self.state.slack_files[file_id] = {"name": fields["filename"], "length": int(fields["length"])}
        upload_url = f"{str(request.base_url).rstrip('/')}/slack-upload/{file_id}"
        return JSONResponse({"ok": True, "upload_url": upload_url, "file_id": file_id})

    def complete_upload(self, fields: dict[str, Any]) -> Response:
        files = fields.get("files") or "[]"
        files = json.loads(files) if isinstance(files, str) else files
        channel = str(fields.get("channel_id") or "")
        if not _CHANNEL.match(channel) or channel == "CMISSING":
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        done = []
        for item in files:
            known = self.state.slack_files.get(item.get("id"))
            if known is None or "path" not in known:
                return JSONResponse({"ok": False, "error": "file_not_found"})
            known.update(channel=channel, comment=fields.get("initial_comment"), completed=True)
            done.append({"id": item["id"], "title": item.get("title") or known["name"]})
        return JSONResponse({"ok": True, "files": done})

    async def slack_upload(self, request: Request, entry: dict[str, Any], file_id: str) -> Response:
        known = self.state.slack_files.get(file_id)
        if known is None:
            return PlainTextResponse("not found", status_code=404)
        await self.save_stream(request, entry)
        known.update(path=entry["body_path"], size=entry["body_size"], sha256=entry["body_sha256"])
        return PlainTextResponse(f"OK - {entry['body_size']}")

    async def webhook(self, request: Request, entry: dict[str, Any], secret_path: str) -> Response:
        if secret_path != self.state.webhook_path:
            return PlainTextResponse("no_service", status_code=404)
        try:
            entry["json"] = json.loads(await request.body())
        except ValueError:
            return PlainTextResponse("invalid_payload", status_code=400)
        if not isinstance(entry["json"], dict) or not entry["json"].get("text"):
            return PlainTextResponse("no_text", status_code=400)
        return PlainTextResponse("ok")

    async def upload(self, request: Request, entry: dict[str, Any]) -> Response:
        if request.method not in ("POST", "PUT"):
            return PlainTextResponse("method not allowed", status_code=405)
        expected = self.state.upload_auth
        if expected is not None and request.headers.get("authorization") != expected:
            got = request.headers.get("authorization", "<none>")
            return PlainTextResponse(f"invalid credentials: got Authorization: {got}", status_code=401)
        key = request.headers.get("idempotency-key")
        if key and key in self.state.idempotency:
            entry["replayed"] = True
            return JSONResponse({"id": self.state.idempotency[key], "replayed": True})
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            await self.save_form(request, entry)
        else:
            await self.save_stream(request, entry)
        upload_id = entry["upload_id"] = f"up-{entry['seq']}"
        if key:
            self.state.idempotency[key] = upload_id
        return JSONResponse({"id": upload_id}, status_code=201, headers={"Location": f"/files/{upload_id}"})

    async def admin(self, request: Request) -> Response:
        action, state = request.url.path.removeprefix("/_sink/"), self.state
        readers = {
            "health": lambda: "ok",
            "requests": lambda: state.log,
            "slack-files": lambda: state.slack_files,
        }
        if action in readers:
            return JSONResponse(readers[action]())
        body = await request.json() if await request.body() else {}
        if action == "fail":
            prefix = body.get("path_prefix") or "/"
            state.failures.extend([(int(body.get("status", 500)), prefix)] * int(body.get("count", 1)))
        elif action == "config":
            state.upload_auth = body.get("upload_auth")
        elif action == "reset":
            state.log.clear()
            state.failures.clear()
            state.slack_files.clear()
            state.idempotency.clear()
            state.upload_auth = None
        else:
            return PlainTextResponse("unknown admin action", status_code=404)
        return JSONResponse({"ok": True})


def create_app(storage: Path, slack_token: str, webhook_path: str) -> Starlette:
    app = _SinkApp(_State(storage, slack_token, webhook_path))
    return Starlette(
        routes=[Route("/{path:path}", app.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
    )


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--slack-token", required=True)
    parser.add_argument("--webhook-path", required=True)
    args = parser.parse_args(argv)
    app = create_app(Path(args.storage), args.slack_token, args.webhook_path)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


# ----------------------------------------------------------------------------------------- the test side


@dataclass
class HttpSink:
    url: str  # e.g. "http://127.0.0.1:43123", no trailing slash
    slack_token: str
    webhook_path: str
    proc: subprocess.Popen[bytes]
    tmpdir: Path
    log_file: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/hooks/{self.webhook_path}"

    def _admin(self, action: str, body: dict[str, Any] | None = None) -> Any:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            if body is None and action in ("requests", "slack-files", "health"):
                response = client.get(f"{self.url}/_sink/{action}")
            else:
                response = client.post(f"{self.url}/_sink/{action}", json=body or {})
        response.raise_for_status()
        return response.json()

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every request received (oldest first), or those of one kind (upload, slack_api, webhook, ...)."""
        log = self._admin("requests")
        return [r for r in log if kind is None or r.get("kind") == kind]

    def uploads(self) -> list[dict[str, Any]]:
        """Uploads the endpoint stored (not injected failures, not idempotent replays)."""
        return [r for r in self.requests("upload") if r.get("upload_id")]

    def slack_files(self) -> dict[str, dict[str, Any]]:
        return self._admin("slack-files")

    def fail_next(self, count: int, status: int = 500, path_prefix: str = "/") -> None:
        self._admin("fail", {"count": count, "status": status, "path_prefix": path_prefix})

    def require_upload_auth(self, value: str | None) -> None:
        self._admin("config", {"upload_auth": value})

    def reset(self) -> None:
        self._admin("reset")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def body_bytes(stored: dict[str, Any]) -> bytes:
    """The bytes of a logged body (``body_path``) or form file (``path``)."""
    return Path(stored.get("body_path") or stored["path"]).read_bytes()


def start_http_sink(
    *,
    slack_token: str = "xoxb-sink-Secret-Token-42",
    webhook_path: str = "T0001/B0001/hookSecretPath77",
    host: str = "127.0.0.1",
    timeout: float = START_TIMEOUT,
    attempts: int = 3,
) -> HttpSink:
    """Start the sink in a subprocess and wait until it answers."""
    tmpdir = Path(tempfile.mkdtemp(prefix="b2b-sink-"))
    storage = tmpdir / "bodies"
    storage.mkdir()
    log_file = tmpdir / "sink.log"
    try:
        for attempt in range(1, attempts + 1):
            # The port is free now, but something may take it before uvicorn binds: retry with another.
            port = free_port(host)
            url = f"http://{host}:{port}"
            args = ["--host", host, "--port", str(port), "--storage", str(storage), "--slack-token", slack_token,
                    "--webhook-path", webhook_path]  # fmt: skip
            with log_file.open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    start_new_session=True,
                )
            try:
                wait_until_answers(proc, f"{url}/_sink/health", log_file, timeout, "the HTTP sink")
            except RuntimeError:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if attempt < attempts and "address already in use" in log_file.read_text(errors="replace"):
                    continue
                raise
            sink = HttpSink(url, slack_token, webhook_path, proc, tmpdir, log_file)
            atexit.register(sink.stop)  # a crashed test session must not leave the server running
            return sink
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


if __name__ == "__main__":
    main()
