"""The plugin's FastAPI app, mounted by Airflow's API server under ``/b2b``.

Built by a plain factory so it is testable with FastAPI's TestClient; the collaborators of the webhook
receiver (where routes come from, where events go), of the app-events endpoint (subscriptions, who may
publish) and of the sync endpoints (routes, runs) are parameters, with the production ones as defaults.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from b2b_integrations import __version__
from b2b_integrations.api.events import Authorize, add_event_routes, airflow_publisher
from b2b_integrations.api.instances import add_instance_routes
from b2b_integrations.api.portal import router as portal_router
from b2b_integrations.api.sync import add_sync_routes

if TYPE_CHECKING:
    from b2b_integrations.api.deps import Services
    from b2b_integrations.events.routes import AppEventRoutes
    from b2b_integrations.sync.service import SyncService
    from b2b_integrations.webhooks.receiver import EventStore, Limits
    from b2b_integrations.webhooks.routes import WebhookRoutes
    from b2b_integrations.webhooks.store import MetadataEventStore

URL_PREFIX = "/b2b"
_heap: dict[str, bool] = {}


def _freeze_startup_heap() -> None:
    # The API server's heap (Airflow, FastAPI, providers) is large and long-lived; every full garbage
    # collection walked it and stalled all requests for ~0.4 s (benchmarks/webhooks.py). Freezing it moves
    # those objects out of the collector's sight; new garbage is still collected.
    if not _heap:
        _heap["frozen"] = True
        gc.freeze()


def create_app(
    routes: WebhookRoutes | None = None,
    store: EventStore | None = None,
    limits: Limits | None = None,
    sync_service: SyncService | None = None,
    app_event_routes: AppEventRoutes | None = None,
    publisher_auth: Authorize | None = None,
    instances: Callable[[], Services] | None = None,
) -> FastAPI:
    app = FastAPI(title="b2b-integrations", version=__version__, description="B2B integration endpoints.")

    @app.get("/health", summary="Liveness of the b2b-integrations endpoints")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(portal_router)  # the customer portal's page files (pages/portal/)

    state: dict[str, object] = {}

    def collaborators() -> tuple[WebhookRoutes, EventStore, Limits]:
        # Built on first use: the API server imports this module before its own setup is complete.
        if not state:
            _freeze_startup_heap()
            from b2b_integrations.webhooks.receiver import Limits
            from b2b_integrations.webhooks.routes import WebhookRoutes, include_dir_for_api_server
            from b2b_integrations.webhooks.store import MetadataEventStore

            state["routes"] = routes or WebhookRoutes(include_dir_for_api_server())
            state["store"] = store or MetadataEventStore()
            state["limits"] = limits or Limits(
                max_bytes=int(os.environ.get("B2B_WEBHOOK_MAX_BYTES", Limits.max_bytes)),
                inline_bytes=int(os.environ.get("B2B_WEBHOOK_INLINE_BYTES", Limits.inline_bytes)),
            )
        return state["routes"], state["store"], state["limits"]  # type: ignore[return-value]

    @app.post(
        "/webhooks/{customer}/{integration}/{flow}",
        summary="Receive a signed webhook for one customer's flow",
        status_code=202,
    )
    async def webhook(customer: str, integration: str, flow: str, request: Request) -> JSONResponse:
        from b2b_integrations.webhooks.receiver import receive, too_large
        from b2b_integrations.webhooks.routes import connection_secret

        found_routes, found_store, found_limits = collaborators()
        body = bytearray()
        async for chunk in request.stream():  # never buffer more than the cap
            body += chunk
            if len(body) > found_limits.max_bytes:
                answer = too_large(found_limits)
                return JSONResponse(answer.body, status_code=answer.status)
        route = await run_in_threadpool(found_routes.find, customer, integration, flow)
        answer = await run_in_threadpool(
            receive,
            route,
            connection_secret,
            found_store,
            dict(request.headers),
            bytes(body),
            time.time(),
            found_limits,
        )
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    services: dict[str, SyncService] = {}

    def sync() -> SyncService:
        # Built on first use, like the webhook collaborators.
        if not services:
            _freeze_startup_heap()
            from b2b_integrations.sync.airflow_runs import AirflowRuns
            from b2b_integrations.sync.routes import SyncRoutes
            from b2b_integrations.sync.service import DEFAULT_POLL_SECONDS, SyncService
            from b2b_integrations.webhooks.routes import include_dir_for_api_server

            services["sync"] = sync_service or SyncService(
                SyncRoutes(include_dir_for_api_server()),
                AirflowRuns(),
                poll_seconds=float(os.environ.get("B2B_SYNC_POLL_SECONDS", DEFAULT_POLL_SECONDS)),
            )
        return services["sync"]

    add_sync_routes(app, sync)

    def event_collaborators() -> tuple[AppEventRoutes, MetadataEventStore, Limits]:
        # App events share the webhooks' store, so both are group-committed together.
        found_routes, found_store, found_limits = collaborators()
        if "app_events" not in state:
            from b2b_integrations.events.routes import AppEventRoutes
            from b2b_integrations.webhooks.routes import include_dir_for_api_server

            state["app_events"] = app_event_routes or AppEventRoutes(
                getattr(found_routes, "include_dir", None) or include_dir_for_api_server()
            )
        return state["app_events"], found_store, found_limits  # type: ignore[return-value]

    add_event_routes(app, event_collaborators, publisher_auth or airflow_publisher)

    def production_instances() -> Services:
        _freeze_startup_heap()
        from b2b_integrations.api.deps import production_services

        return production_services()

    add_instance_routes(app, instances or production_instances)
    from b2b_integrations.api.overview import pages as overview_pages
    from b2b_integrations.api.overview import router as overview_router

    app.include_router(overview_router)  # the Integrations page's data and files (engineers)
    app.include_router(overview_pages)
    from b2b_integrations.api.monitors import router as monitors_router  # uses the instances' services

    app.include_router(monitors_router)
    return app
