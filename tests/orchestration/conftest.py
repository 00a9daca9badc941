"""An embedded Airflow home per test module: SQLite DB migrated once, this repo's DAGs."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def airflow_settings(settings, monkeypatch: pytest.MonkeyPatch):
    """Settings plus the process environment of the embedded Airflow for in-process use."""
    from modelyard.airflow_env import airflow_env

    for key, value in airflow_env(settings, base={}).items():
        if key != "PATH":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", airflow_env(settings, base=dict(os.environ))["PATH"])
    return settings
