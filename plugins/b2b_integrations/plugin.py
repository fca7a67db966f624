"""The AirflowPlugin: mounts the package's FastAPI app on the Airflow API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from b2b_integrations.api.app import URL_PREFIX, create_app


class B2BIntegrationsPlugin(AirflowPlugin):
    """Registered once, from plugins/b2b_integrations_plugin.py."""

    name = "b2b_integrations"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "b2b-integrations"}]
    # The engineers' Integrations page, in Airflow's navigation: the UI shows it in an iframe at
    # /plugin/integrations; same origin, so the page's requests carry the UI's session cookie.
    external_views = [
        {
            "name": "Integrations",
            "href": f"{URL_PREFIX}/ui/integrations",
            "url_route": "integrations",
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{URL_PREFIX}/ui/integrations/icon.svg",
        }
    ]
