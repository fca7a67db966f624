"""The plugin's FastAPI app, tested without an Airflow server."""

from __future__ import annotations

from fastapi.testclient import TestClient

from b2b_integrations import __version__
from b2b_integrations.api.app import create_app


def test_health() -> None:
    response = TestClient(create_app()).get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}
