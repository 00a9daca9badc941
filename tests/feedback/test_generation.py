"""Two model generations under the real scheduler, nothing started by hand but data and traffic.

`airflow standalone` (scheduler, triggerer, DAG processor) runs every DAG unpaused on the
embedded default. The test writes the first raw partition and drives users at a real gateway
(`modelyard serve`); everything else is Airflow's doing: time-based DAGs (``curate_dataset``,
``harvest_feedback``) through backfills of explicit dates (the second one `modelyard backfill`,
which harvests a date that got feedback before curating it), ``finetune_model`` and
``auto_canary`` on Asset events, ``canary_analysis`` on its schedule (every minute here).

    D0 raw -> curate -> finetune (gen 1) -> gate -> staging -> auto canary -> production
    (the first version has no incumbent to compare a canary with) -> rated traffic on D1 ->
    harvest_feedback D1 -> curate D1 (after the harvest) -> finetune (gen 2, snapshot D0+D1)
    -> gate -> staging -> auto canary -> traffic -> canary_analysis -> production on gen 2

The gateway stamps traffic with the real clock, and Airflow backfills only intervals that
have ended, so once gen 1's users have rated its answers the request log is moved back to
D1, two days ago (those answers were D1's): the only step that is not production's own.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from modelyard.airflow_api import AirflowAPI, AirflowAPIError, quoted
from modelyard.airflow_env import running_airflow
from modelyard.backfill import create_backfill, run_backfill
from modelyard.sampledata import write_partition
from tests.net import free_port

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]
DAGS = (
    "curate_dataset",
    "harvest_feedback",
    "finetune_model",
    "auto_canary",
    "canary_analysis",
)
RECIPE = {
    "learning_rate": 5e-3,
    "max_steps": 40,
    "lora": {"r": 16},
    "max_seq_length": 256,
    "eval_steps": 20,
    "save_steps": 20,
    "early_stopping_patience": 3,
}
ENV = {
    "MODELYARD_CANARY__SCHEDULE": "* * * * *",
    "MODELYARD_CANARY__BAKE_MINUTES": "0",
    "MODELYARD_CANARY__METRICS": json.dumps(
        {m: {"min_samples": 10} for m in ("error_rate", "format_validity", "latency")}
        | {"thumbs_up": {"min_samples": 5}}
    ),
    "MODELYARD_SERVING__CANARY_SHARE": "0.5",
    "MODELYARD_SERVING__POLL_SECONDS": "1",
    "MODELYARD_SERVING__LOG_FLUSH_SECONDS": "0.1",
    "MODELYARD_TRAINING__RECIPE": json.dumps(RECIPE),
    # Gen 2 must not be refused for noise against gen 1 (same recipe, one more day of data).
    "MODELYARD_GATE__THRESHOLDS": json.dumps(
        {
            "rouge_l": {"threshold": 0.3, "min_absolute_change": -0.5},
            "format_validity": {"threshold": 0.5},
        }
    ),
}


@pytest.fixture
def generation_settings(settings, monkeypatch):
    """The tiny-model settings, with the knobs above, in this process and Airflow's."""
    import os

    from modelyard import settings as settings_mod
    from modelyard.airflow_env import airflow_env

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    settings_mod.get_settings.cache_clear()
    fresh = settings_mod.get_settings()
    for key, value in airflow_env(fresh, base={}).items():
        if key != "PATH":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", airflow_env(fresh, base=dict(os.environ))["PATH"])
    return fresh


def _wait(check, what: str, timeout: float = 600.0, every: float = 2.0):
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
    """The library's backfill request: it retries what SQLite-busy looks like (503, a 500
    "Database error", the partial backfill's 409 after one), seen under load."""
    return create_backfill(api, [day], dag_id=dag_id)


def _aliases(settings) -> dict[str, str]:
    """The registered model's aliases ({} before its first version is registered)."""
    from mlflow.exceptions import MlflowException

    from modelyard.registry.artifacts import client_for
    from modelyard.registry.connection import StoreMissing, require_store

    try:  # a poll must not create the store the DAGs' tasks are about to create
        require_store(settings)
        model = client_for(settings).get_registered_model(settings.registered_model)
    except (StoreMissing, MlflowException):
        return {}
    return {alias: str(version) for alias, version in model.aliases.items()}


def _versions(settings) -> list:
    from modelyard.registry.artifacts import client_for

    found = client_for(settings).search_model_versions(f"name='{settings.registered_model}'")
    return sorted(found, key=lambda v: int(v.version))


def _shift_log_back(settings, days: int) -> None:
    """Traffic of ``days`` ago: every logged request and rating moves that far back."""
    path = settings.home / "serving" / "requests.db"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE serving_requests SET ts = ts - ?", (days * 86400,))
        conn.execute("UPDATE serving_feedback SET ts = ts - ?", (days * 86400,))


def _drive_until(gateway, settings, done, what: str, timeout: float = 600.0) -> None:
    """Simulated users on the gateway until ``done()``: the canary analysis needs their data."""
    from modelyard.canary.loadgen import simulate_users

    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} did not reach production: {_aliases(settings)}"
        simulate_users(gateway.url, settings.registered_model, requests=40, seed=3)


def _failed_tries(api: AirflowAPI) -> list[dict]:
    """Every task try of the chain's DAGs that failed (a task that passed on a retry
    included); backfills re-running a date add tries too, but successful ones."""
    found = []
    for dag_id in DAGS:
        for run in api.get(f"/api/v2/dags/{dag_id}/dagRuns", limit=200)["dag_runs"]:
            base = f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run['dag_run_id'])}/taskInstances"
            for ti in api.get(base)["task_instances"]:
                tries = api.get(f"{base}/{ti['task_id']}/tries")["task_instances"]
                found += [
                    {"dag_id": dag_id, "run_id": run["dag_run_id"], **t}
                    for t in tries
                    if t["state"] in ("failed", "up_for_retry")
                ]
    return found


def test_two_generations_run_from_raw_data_to_production_by_themselves(
    generation_settings, tiny_model
):
    from modelyard.canary.loadgen import simulate_users
    from modelyard.registry import tags
    from modelyard.registry.artifacts import client_for
    from modelyard.registry.ledger import read_ledger
    from tests.serving.harness import GatewayProcess

    settings = generation_settings
    today = datetime.now(UTC).date()
    # Older than yesterday: unpausing the time-based DAGs starts their scheduled runs for
    # yesterday, which the backfills below must not collide with (reprocessing a run the
    # scheduler just ran is Airflow's business, not this chain's).
    d0, d1 = (today - timedelta(days=3)).isoformat(), (today - timedelta(days=2)).isoformat()
    write_partition(settings.storage_path / "raw", date.fromisoformat(d0), n=120)
    gateway = GatewayProcess(settings.home, tiny_model, env=ENV)

    with running_airflow(settings, port=free_port()) as base_url:
        api = AirflowAPI.login_embedded(base_url, Path(settings.home) / "airflow", "admin")
        unpause = {"is_paused": False}  # a write: SQLite may be busy (503) right after boot
        for dag_id in DAGS:
            _wait(lambda d=dag_id: api.get(f"/api/v2/dags/{d}/details"), f"{dag_id} parsed")
            _wait(lambda d=dag_id: api.patch(f"/api/v2/dags/{d}", unpause), f"{dag_id} unpaused")

        # Generation 1: the first raw data is all the test provides.
        _backfill(api, "curate_dataset", d0)
        # The operator's gateway is up before any model is: it boots while gen 1 is curated and
        # trained, and routes production to it once it is there.
        gateway.start()
        try:
            # The first version has no incumbent to compare a canary with: auto_canary takes it
            # on to production (promotion.first_to_production), both moves in the ledger.
            gen1 = _wait(lambda: _aliases(settings).get("production"), "gen 1 in production", 1200)
            gateway.wait_until(lambda: gateway.health()["production"] == gen1, 120)
            simulate_users(gateway.url, settings.registered_model, requests=60, seed=2)
            time.sleep(1)  # the log writer's last flush
            _shift_log_back(settings, days=2)

            # Generation 2: D1's feedback. A user's `modelyard backfill` of that date
            # backfills harvest_feedback for it first (the request log holds feedback there),
            # then curate_dataset, whose sensor waits for the harvest: without it the manifest
            # checked below would count no feedback, and curation alone would wait for hours.
            lines: list[str] = []
            day1 = date.fromisoformat(d1)
            outcomes = run_backfill(settings, day1, day1, out=lines.append)
            assert any(f"of harvest_feedback {d1}..{d1}" in line for line in lines), lines
            assert [(o.day, o.status) for o in outcomes] == [(d1, "new")], lines
            _wait(
                lambda: (a := _aliases(settings)).get("canary") not in (None, gen1) and a,
                "gen 2 in canary",
                timeout=900,
            )
            _drive_until(
                gateway, settings, lambda: _aliases(settings).get("production") != gen1, "gen 2"
            )
        finally:
            gateway.stop()
        failed = _failed_tries(api)
        api.close()

    versions = _versions(settings)
    assert len(versions) == 2
    gen2 = str(versions[1].version)
    assert _aliases(settings)["production"] == gen2
    # Gen 2 trained on both days; the new day's version counts the harvested feedback.
    dataset = versions[1].tags[tags.DATASET_VERSION]
    assert json.loads(versions[1].tags[tags.SNAPSHOT_VERSIONS]) == [
        versions[0].tags[tags.DATASET_VERSION],
        dataset,
    ]
    manifest = json.loads(
        (settings.storage_path / "datasets" / dataset / "manifest.json").read_text()
    )
    assert manifest["partition"] == d1
    assert manifest["feedback"]["input"] > 0 and manifest["feedback"]["train"] > 0
    harvest_report = json.loads((settings.storage_path / "feedback" / f"{d1}.json").read_text())
    assert manifest["feedback"]["input"] == harvest_report["records"]
    ledger = read_ledger(client_for(settings), settings.registered_model)
    story = [(e["version"], e["to_stage"], e["actor"]) for e in ledger]
    assert story == [
        (gen1, "staging", "airflow:finetune_model"),
        (gen1, "canary", "airflow:auto_canary"),
        (gen1, "production", "airflow:auto_canary"),
        (gen2, "staging", "airflow:finetune_model"),
        (gen2, "canary", "airflow:auto_canary"),
        (gen2, "production", "airflow:canary_analysis"),
    ]
    assert failed == []  # no task failed, none needed a retry to pass
