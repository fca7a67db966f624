"""What every route of the instances API depends on: the services (store, include folder, caller
authentication), the caller, and the request body under the inbound JSON policy.

Routes get them as FastAPI dependencies (``Who``, ``Svc``); the services live on the app's state, so
tests build the app with their own and every router module stays a plain module-level ``APIRouter``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from b2b_integrations.api.access import Authenticate, Caller, authenticate
from b2b_integrations.api.errors import ApiError
from b2b_integrations.instances.store import InstanceStore

MAX_BODY_BYTES = 256 * 1024
log = logging.getLogger(__name__)


@dataclass
class Services:
    """What the routes work with; the production ones are built on first use (see ``production``)."""

    include_dir: Path
    store: InstanceStore
    authenticate: Authenticate = authenticate
    airflow_db: bool = True
    """Pause/unpause DAGs and queue re-parses in Airflow's metadata DB (off in tests without Airflow)."""
    _templates: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def templates_project(self) -> Any:
        """Templates only (no customer is read), re-loaded when a template file changes."""
        from b2b_integrations.config.last_valid import default_store
        from b2b_integrations.config.loader import TEMPLATES_DIR, load_project

        folder = self.include_dir / TEMPLATES_DIR
        stamp = (
            tuple(sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*.y*ml")))
            if folder.is_dir()
            else ()
        )
        with self._lock:
            if self._templates.get("stamp") != stamp:
                self._templates["project"] = load_project(
                    self.include_dir, last_valid=default_store(), customer_filter=lambda _: False
                )
                self._templates["stamp"] = stamp
            return self._templates["project"]


def production_services() -> Services:
    from b2b_integrations.instances.deployment import request_reparse
    from b2b_integrations.webhooks.routes import include_dir_for_api_server

    def reparse(customer: str) -> None:
        from airflow.utils.session import create_session

        # The file is written: a failure here must not turn the write into an error. Without the request
        # the dag-processor still reads the change at its next min_file_process_interval.
        try:
            with create_session() as session:
                request_reparse(customer, session)
        except Exception:
            log.warning(
                "b2b-integrations: could not queue a re-parse for customer %s", customer, exc_info=True
            )

    include_dir = include_dir_for_api_server()
    return Services(include_dir, InstanceStore(include_dir, after_write=reparse))


def pinned_template(project: Any, integration: str, settings: dict[str, Any] | None) -> Any:
    """The template version an instance's settings (plain data) run on: its pin, else the current file."""
    from types import SimpleNamespace

    pinned = (settings or {}).get("version")
    return project.template_for(
        integration, SimpleNamespace(version=str(pinned)) if pinned is not None else None
    )


def template_versions(project: Any, name: str) -> list[str]:
    """The versions of an integration a customer may pin, oldest first."""
    return project.versions_of(name)  # type: ignore[no-any-return]


async def read_object(request: Request) -> dict[str, Any]:
    """The request's JSON object under the inbound JSON policy (net/json_body.py); 400/413 otherwise."""
    from b2b_integrations.net.json_body import JsonRefused, parse_json

    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"at most {MAX_BODY_BYTES} bytes per request")
    try:
        value = parse_json(bytes(body)) if body.strip() else {}
    except JsonRefused as e:
        raise ApiError(400, "invalid_json", str(e)) from e
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "expected a JSON object")
    return value


def services_of(request: Request) -> Services:
    return request.app.state.b2b_instances()  # type: ignore[no-any-return]


async def caller_of(request: Request) -> Caller:
    return await services_of(request).authenticate(request)


Svc = Annotated[Services, Depends(services_of)]
Who = Annotated[Caller, Depends(caller_of)]
ServicesFactory = Callable[[], Services]
