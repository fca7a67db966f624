"""The AirflowPlugin: mounts the package's FastAPI app on the Airflow API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from b2b_integrations.api.app import URL_PREFIX, create_app


class B2BIntegrationsPlugin(AirflowPlugin):
    """Registered once, from plugins/b2b_integrations_plugin.py."""

    name = "b2b_integrations"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "b2b-integrations"}]
