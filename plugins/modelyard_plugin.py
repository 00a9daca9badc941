"""Adds "Model registry" to the Airflow UI's Browse menu (see modelyard.registry_page)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from modelyard.registry_page import create_app


class ModelyardPlugin(AirflowPlugin):
    name = "modelyard"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/modelyard", "name": "modelyard registry"}]
    external_views = [
        {
            "name": "Model registry",
            "href": "/modelyard/",
            "destination": "nav",
            "category": "browse",
            "url_route": "modelyard",
        }
    ]
