"""A backfill over three historical dates under a real Airflow scheduler (`airflow standalone`).

The middle date has no raw partition: that run must be a clear skip, not a failure of the
backfill. Re-running the backfill republishes the same versions and emits no new Asset event.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from modelyard.airflow_env import airflow, running_airflow
from modelyard.sampledata import write_partition
from tests.net import free_port
from tests.orchestration.api import AirflowAPI

pytestmark = pytest.mark.airflow
DATES = ["2026-10-01", "2026-10-02", "2026-10-03"]
MISSING = "2026-10-02"


def _backfill_runs(api: AirflowAPI, backfills: int, timeout: float = 420) -> list[dict]:
    """Wait until ``backfills`` backfills have completed; return curate_dataset's backfill runs."""
    api.wait_for(
        lambda: (
            sum(
                b["completed_at"] is not None
                for b in api.get("/api/v2/backfills?dag_id=curate_dataset")["backfills"]
            )
            >= backfills
        ),
        f"{backfills} completed backfill(s)",
        timeout=timeout,
        every=3,
    )
    runs = api.get("/api/v2/dags/curate_dataset/dagRuns?limit=100")["dag_runs"]
    return [r for r in runs if r["run_type"] == "backfill"]


def _db_rows(settings, query: str) -> list[tuple]:
    with sqlite3.connect(Path(settings.home) / "airflow" / "airflow.db") as conn:
        return conn.execute(query).fetchall()


def _backfill(settings) -> None:
    airflow(
        [
            "backfill",
            "create",
            "--dag-id",
            "curate_dataset",
            "--from-date",
            DATES[0],
            "--to-date",
            DATES[-1],
            "--reprocess-behavior",
            "completed",
        ],
        settings,
        capture=True,
    )


def test_backfill_rebuilds_history_and_skips_the_missing_partition(airflow_settings):
    settings = airflow_settings
    raw = settings.storage_path / "raw"
    for day in DATES:
        if day != MISSING:
            write_partition(raw, date.fromisoformat(day), n=60)

    with running_airflow(settings, port=free_port()) as base_url:
        api = AirflowAPI(base_url, Path(settings.home) / "airflow")
        airflow(["dags", "unpause", "curate_dataset"], settings, capture=True)
        _backfill(settings)
        runs = _backfill_runs(api, backfills=1)
        assert {r["logical_date"][:10] for r in runs} == set(DATES)
        assert all(r["state"] == "success" for r in runs), runs

        states = dict(
            _db_rows(
                settings,
                "SELECT dr.logical_date, ti.state FROM task_instance ti "
                "JOIN dag_run dr ON dr.run_id = ti.run_id AND dr.dag_id = ti.dag_id "
                "WHERE ti.task_id = 'curate' AND dr.run_id LIKE 'backfill__%'",
            )
        )
        assert {d[:10]: s for d, s in states.items()}[MISSING] == "skipped"

        pointers = settings.storage_path / "datasets" / "_by_date"
        published = {p.stem: json.loads(p.read_text())["version"] for p in pointers.glob("*.json")}
        assert set(published) == set(DATES) - {MISSING}
        events = _db_rows(settings, "SELECT extra FROM asset_event")
        assert sorted(json.loads(e[0])["version"] for e in events) == sorted(published.values())

        # The same backfill again: same versions, no second Asset event for them.
        _backfill(settings)
        rerun = _backfill_runs(api, backfills=2)
        assert all(r["state"] == "success" for r in rerun), rerun
        again = {p.stem: json.loads(p.read_text())["version"] for p in pointers.glob("*.json")}
        assert again == published
        assert len(_db_rows(settings, "SELECT id FROM asset_event")) == len(published)

        _check_registry_page_needs_login(settings, api)


def _check_registry_page_needs_login(settings, api: AirflowAPI) -> None:
    """The plugin page is served by the API server and refuses anonymous requests."""
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{api.base_url}/modelyard/status.json", timeout=30)
    assert anonymous.value.code == 401
    html = api.get("/modelyard/")
    assert settings.registered_model in html and "Promotion ledger" in html
