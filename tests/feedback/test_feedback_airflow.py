"""The ordering under the real scheduler (`airflow standalone`): curate_dataset for a date that
received feedback waits for harvest_feedback of that date, then curates the harvested records.

Curation's backfill is created first, so without the ordering it would curate the date's raw
data without its feedback; its sensor must sit in ``up_for_reschedule`` (no worker slot held)
until the harvest's backfill has run, and no task may need a retry.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from modelyard.airflow_api import AirflowAPI, AirflowAPIError, quoted
from modelyard.airflow_env import running_airflow
from modelyard.sampledata import INSTRUCTION, write_partition
from tests.feedback.traffic import at, rate, request, serve
from tests.net import free_port

pytestmark = pytest.mark.airflow
D1 = "2026-10-02"
ANSWER = json.dumps({"name": "Mira Okafor", "job": "architect", "city": "Nairobi"})


def _wait(check, what: str, timeout: float = 300.0, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except AirflowAPIError as exc:
            if exc.status not in (404, 503):
                raise
            found = None
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _backfill(api: AirflowAPI, dag_id: str, day: str) -> dict:
    """Unpause ``dag_id`` and backfill ``day``; retried while the SQLite DB is locked (503)."""
    _wait(lambda: api.get(f"/api/v2/dags/{dag_id}/details"), f"{dag_id} to be parsed")
    api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
    body = {
        "dag_id": dag_id,
        "from_date": f"{day}T00:00:00Z",
        "to_date": f"{day}T00:00:00Z",
        "reprocess_behavior": "completed",
        "max_active_runs": 1,
    }
    return _wait(lambda: api.post("/api/v2/backfills", body), f"a backfill of {dag_id}")


def _run(api: AirflowAPI, dag_id: str, day: str) -> dict | None:
    runs = api.get(f"/api/v2/dags/{dag_id}/dagRuns", run_type="backfill")["dag_runs"]
    return next((r for r in runs if r["logical_date"][:10] == day), None)


def _tasks(api: AirflowAPI, dag_id: str, run: dict) -> dict[str, dict]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run['dag_run_id'])}/taskInstances"
    return {t["task_id"]: t for t in api.get(path)["task_instances"]}


def _finished(api: AirflowAPI, dag_id: str, day: str) -> dict | None:
    run = _run(api, dag_id, day)
    return run if run and run["state"] in ("success", "failed") else None


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_curation_waits_for_the_dates_harvest_under_the_scheduler(airflow_store):
    settings = airflow_store
    write_partition(settings.storage_path / "raw", date.fromisoformat(D1), n=40)
    prompt = f"{INSTRUCTION}\nMira Okafor has been working as an architect in Nairobi for years."
    serve(
        settings,
        [request("chatcmpl-1", at(D1, 9), prompt, ANSWER), rate("chatcmpl-1", at(D1, 10), 1)],
    )

    with running_airflow(settings, port=free_port()) as base_url:
        api = AirflowAPI.login_embedded(base_url, Path(settings.home) / "airflow", "admin")
        _backfill(api, "curate_dataset", D1)
        waiting = _wait(
            lambda: (
                (run := _run(api, "curate_dataset", D1))
                and _tasks(api, "curate_dataset", run)["feedback_harvested"]["state"]
                == "up_for_reschedule"
            ),
            "curation's sensor to wait for the harvest",
        )
        assert waiting
        run = _run(api, "curate_dataset", D1)
        assert _tasks(api, "curate_dataset", run)["curate"]["state"] in (None, "scheduled")

        _backfill(api, "harvest_feedback", D1)
        harvested = _wait(lambda: _finished(api, "harvest_feedback", D1), "the harvest")
        curated = _wait(lambda: _finished(api, "curate_dataset", D1), "the curation")
        assert (harvested["state"], curated["state"]) == ("success", "success")

        curate_tasks = _tasks(api, "curate_dataset", curated)
        harvest_tasks = _tasks(api, "harvest_feedback", harvested)
        assert _instant(curate_tasks["curate"]["start_date"]) >= _instant(
            harvest_tasks["harvest"]["end_date"]
        )
        for task in [*curate_tasks.values(), *harvest_tasks.values()]:
            assert task["try_number"] == 1, task  # nothing needed a retry
        api.close()

    pointer = settings.storage_path / "datasets" / "_by_date" / f"{D1}.json"
    version_dir = Path(json.loads(pointer.read_text())["path"])
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["feedback"]["input"] == 1 and manifest["feedback"]["rejected"] == 0
    assert any(s["file"].startswith(f"{D1}/feedback-") for s in manifest["source_files"])
