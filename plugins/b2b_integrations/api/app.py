"""The plugin's FastAPI app, mounted by Airflow's API server under ``/b2b``.

Later features (webhooks in, app events in, sync calls) add routers here. Built by a plain factory so it
is testable with FastAPI's TestClient and no Airflow server.
"""

from __future__ import annotations

from fastapi import FastAPI

from b2b_integrations import __version__

URL_PREFIX = "/b2b"


def create_app() -> FastAPI:
    app = FastAPI(title="b2b-integrations", version=__version__, description="B2B integration endpoints.")

    @app.get("/health", summary="Liveness of the b2b-integrations endpoints")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
