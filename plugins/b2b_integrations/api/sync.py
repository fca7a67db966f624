"""The sync endpoints on the plugin's FastAPI app; every decision is in :mod:`b2b_integrations.sync.service`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from b2b_integrations.sync.service import Answer, SyncService

STATUS_ROUTE = "sync_run_status"


def add_sync_routes(app: FastAPI, service: Callable[[], SyncService]) -> None:
    """``POST /sync/{customer}/{integration}/{flow}`` and ``GET .../runs/{run_id}`` (under the app's prefix)."""

    def status_url(request: Request, customer: str, integration: str, flow: str) -> Callable[[str], str]:
        def url(run_id: str) -> str:
            return str(
                request.url_for(
                    STATUS_ROUTE, customer=customer, integration=integration, flow=flow, run_id=run_id
                )
            )

        return url

    @app.post(
        "/sync/{customer}/{integration}/{flow}",
        summary="Run one customer's synchronous flow with the JSON body and answer its result",
        responses={202: {"description": "Still running: poll status_url (or wait for the callback)"}},
    )
    async def sync_call(customer: str, integration: str, flow: str, request: Request) -> JSONResponse:
        async def read_body(limit: int) -> bytes | None:
            body = bytearray()
            async for chunk in request.stream():  # never buffer more than the cap
                body += chunk
                if len(body) > limit:
                    return None
            return bytes(body)

        answer = await service().call(
            customer,
            integration,
            flow,
            dict(request.headers),
            read_body,
            status_url(request, customer, integration, flow),
            request.is_disconnected,
        )
        return _response(answer)

    @app.get(
        "/sync/{customer}/{integration}/{flow}/runs/{run_id}",
        name=STATUS_ROUTE,
        summary="State of a synchronous call's run, with its result or error once it has ended",
    )
    async def sync_status(
        customer: str, integration: str, flow: str, run_id: str, request: Request
    ) -> JSONResponse:
        answer = await service().status(
            customer,
            integration,
            flow,
            run_id,
            dict(request.headers),
            status_url(request, customer, integration, flow),
            request.is_disconnected,
        )
        return _response(answer)


def _response(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
