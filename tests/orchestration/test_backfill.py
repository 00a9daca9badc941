"""`modelyard backfill` under a real Airflow scheduler (`airflow standalone`).

First the demo's curation step (the same code: a real backfill of `curate_dataset`) over four
dates, the first of which has no raw partition: a clear skip, not a failure. Then a user runs
`modelyard backfill` over the three curated dates in its own process: the dates the demo's
backfill holds are re-run, each reports "unchanged", the published versions stay the same and no
second Asset event is emitted. Each backfill ran one run at a time, in date order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import urllib.error
import urllib.request
from datetime import date, datetime
from pathlib import Path

import pytest

from modelyard.airflow_api import AirflowAPI
from modelyard.airflow_env import VENV_BIN, running_airflow
from modelyard.backfill import run_backfill
from modelyard.sampledata import write_partition
from tests.net import free_port

pytestmark = pytest.mark.airflow
MISSING = "2026-09-30"
DATES = ["2026-10-01", "2026-10-02", "2026-10-03"]


def _published(settings) -> dict[str, str]:
    pointers = settings.storage_path / "datasets" / "_by_date"
    return {p.stem: json.loads(p.read_text())["version"] for p in pointers.glob("*.json")}


def _asset_events(settings) -> list[str]:
    with sqlite3.connect(Path(settings.home) / "airflow" / "airflow.db") as conn:
        rows = conn.execute("SELECT extra FROM asset_event ORDER BY id").fetchall()
    return [json.loads(extra)["version"] for (extra,) in rows]


def _backfill_runs(api: AirflowAPI) -> list[dict]:
    runs = api.get(
        "/api/v2/dags/curate_dataset/dagRuns", run_type="backfill", order_by="logical_date"
    )
    return runs["dag_runs"]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _assert_one_at_a_time_in_date_order(runs: list[dict]) -> None:
    """Each run started after the previous date's run ended, and ran for seconds, not the
    weeks between its logical date and today."""
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert _instant(later["start_date"]) >= _instant(earlier["end_date"]), (earlier, later)
    for run in runs:
        assert _instant(run["start_date"]) >= _instant(run["queued_at"])
        assert run["duration"] < 600, run


def test_backfill_after_the_demo_reports_unchanged_and_keeps_the_versions(airflow_settings):
    settings = airflow_settings
    raw = settings.storage_path / "raw"
    for day in DATES:
        write_partition(raw, date.fromisoformat(day), n=60)

    with running_airflow(settings, port=free_port()) as base_url:
        api = AirflowAPI.login_embedded(base_url, Path(settings.home) / "airflow", "admin")
        lines: list[str] = []
        demo = run_backfill(
            settings, date.fromisoformat(MISSING), date.fromisoformat(DATES[-1]), out=lines.append
        )
        assert [(o.day, o.status) for o in demo] == [(MISSING, "skipped")] + [
            (day, "new") for day in DATES
        ]
        assert f"{MISSING}  skipped: no raw partition" in lines
        published = _published(settings)
        assert set(published) == set(DATES)
        assert [o.version for o in demo[1:]] == [published[day] for day in DATES]
        assert sorted(_asset_events(settings)) == sorted(published.values())
        first_runs = _backfill_runs(api)
        assert [r["logical_date"][:10] for r in first_runs] == [MISSING, *DATES]
        _assert_one_at_a_time_in_date_order(first_runs)

        # A user's backfill over the same dates, from the command line, in its own process.
        cli = subprocess.run(
            [str(VENV_BIN / "modelyard"), "backfill", "--from", DATES[0], "--to", DATES[-1]],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        for day in DATES:
            assert f"{day}  {published[day]}  unchanged" in cli.stdout.splitlines(), cli.stdout
        assert _published(settings) == published
        assert len(_asset_events(settings)) == len(published)  # no second event for a version
        rerun = [r for r in _backfill_runs(api) if r["logical_date"][:10] in DATES]
        assert all(r["state"] == "success" for r in rerun)
        assert min(_instant(r["queued_at"]) for r in rerun) > max(
            _instant(r["end_date"]) for r in first_runs
        )  # the dates were re-run, not skipped
        _assert_one_at_a_time_in_date_order(rerun)

        _check_registry_page_needs_login(settings, base_url, api)


def _check_registry_page_needs_login(settings, base_url: str, api: AirflowAPI) -> None:
    """The plugin page is served by the API server and refuses anonymous requests."""
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{base_url}/modelyard/status.json", timeout=30)
    assert anonymous.value.code == 401
    assert api.get("/modelyard/status.json")["model"] == settings.registered_model
