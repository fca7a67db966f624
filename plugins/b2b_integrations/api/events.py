"""``POST /events``: our own app publishes app events (Airflow auth); the decisions are in
:mod:`b2b_integrations.events.ingest`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from b2b_integrations.events.routes import AppEventRoutes
    from b2b_integrations.webhooks.receiver import Limits
    from b2b_integrations.webhooks.store import MetadataEventStore

Authorize = Callable[[str | None], Awaitable[int | None]]
"""The ``Authorization`` header -> None when the caller may publish, else the HTTP status (401, 403)."""

MAX_PUBLISH_BYTES = 8 * 1024 * 1024


async def airflow_publisher(authorization: str | None) -> int | None:
    """A Bearer JWT from Airflow's ``/auth/token`` whose user may create asset events (what
    ``POST /api/v2/assets/events`` requires too)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AssetDetails

    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return 401
    manager = get_auth_manager()
    try:
        user = await manager.get_user_from_token(token.strip())
    except Exception:  # expired, malformed or forged: all the same to the caller
        return 401
    return None if manager.is_authorized_asset(method="POST", details=AssetDetails(), user=user) else 403


def add_event_routes(
    app: FastAPI,
    collaborators: Callable[[], tuple[AppEventRoutes, MetadataEventStore, Limits]],
    authorize: Authorize = airflow_publisher,
) -> None:
    @app.post(
        "/events",
        summary="Publish app events: each reaches the inbox of every customer flow subscribed to it",
        status_code=202,
    )
    async def publish_events(request: Request) -> JSONResponse:
        from b2b_integrations.events.ingest import publish

        refused = await authorize(request.headers.get("authorization"))
        if refused is not None:
            detail = (
                "send 'Authorization: Bearer <token>' from POST /auth/token"
                if refused == 401
                else ("this user may not create asset events")
            )
            return JSONResponse(
                {"error": "unauthorized" if refused == 401 else "forbidden", "detail": detail}, refused
            )
        body = bytearray()
        async for chunk in request.stream():  # never buffer more than the cap
            body += chunk
            if len(body) > MAX_PUBLISH_BYTES:
                return JSONResponse(
                    {"error": "too_large", "detail": f"at most {MAX_PUBLISH_BYTES} bytes per request"}, 413
                )
        routes, store, limits = collaborators()
        answer = await run_in_threadpool(
            publish, bytes(body), request.headers.get("content-type", ""), routes, store, limits
        )
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
