"""Adds "Model registry" to the Airflow UI's Browse menu (see modelyard.registry_page)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from modelyard.registry_page import URL_PREFIX, create_app


class ModelyardPlugin(AirflowPlugin):
    name = "modelyard"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "modelyard registry"}]
    external_views = [
        {
            "name": "Model registry",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "modelyard",
        }
    ]
