"""The plugin's FastAPI app, tested without an Airflow server."""

from __future__ import annotations

from fastapi.testclient import TestClient

from b2b_integrations import __version__
from b2b_integrations.api.app import create_app


def test_health() -> None:
    response = TestClient(create_app()).get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


def test_publishing_events_needs_a_caller_allowed_to_publish() -> None:
    from fastapi.testclient import TestClient

    from b2b_integrations.api import events
    from b2b_integrations.api.app import create_app

    async def refuse(authorization: str | None) -> int | None:
        return 401 if not authorization else 403

    client = TestClient(create_app(publisher_auth=refuse))
    body = {"type": "invoice.paid", "id": "e1", "occurred_at": "2026-11-29T08:00:00Z", "data": {}}
    assert client.post("/events", json=body).status_code == 401
    forbidden = client.post("/events", json=body, headers={"Authorization": "Bearer x"})
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"

    async def allow(authorization: str | None) -> int | None:
        return None

    big = b"[" + b" " * (events.MAX_PUBLISH_BYTES + 1) + b"]"
    answer = TestClient(create_app(publisher_auth=allow)).post(
        "/events", content=big, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
