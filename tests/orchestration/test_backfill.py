"""`modelyard backfill` under a real Airflow scheduler (`airflow standalone`).

A user runs `modelyard backfill` in its own process over four dates, the first of which has no
raw partition: a clear skip, not a failure; each other date is curated and published once, one
run at a time, in date order, and the backfill is closed on return. (Running it again over the
same dates reports each "unchanged": the demo test's second run checks that.)

Then training under the same scheduler: while an operator's `finetune_model` run waits for the
GPU pool, two new dates are curated; once it is cancelled, exactly one Asset-triggered run trains
on a snapshot holding both (and all history), the gate refuses its 2-step candidate (the `gate`
task fails, the run note says why, the webhook is alerted) while `register` records it; the
operator's next run on the same snapshot and recipe trains nothing and notes the version.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from modelyard.airflow_api import AirflowAPI, quoted
from modelyard.airflow_env import VENV_BIN, running_airflow
from modelyard.backfill import run_backfill
from modelyard.sampledata import write_partition
from tests.net import free_port
from tests.orchestration.curated import curated_events, published_versions
from tests.orchestration.test_finetune_dag import Webhook

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]
MISSING = "2026-09-30"
DATES = ["2026-10-01", "2026-10-02", "2026-10-03"]


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


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def test_backfill_publishes_each_date_once_then_new_dates_make_one_training_run(
    airflow_settings, monkeypatch, webhook
):
    settings = airflow_settings
    # Read by the Airflow processes: 2 training steps (a refused candidate, fast), alerts.
    # (the whole recipe: a nested env key alone would replace it with the trainer's defaults)
    recipe = settings.training.recipe.model_copy(update={"max_steps": 2})
    monkeypatch.setenv("MODELYARD_TRAINING__RECIPE", recipe.model_dump_json())
    monkeypatch.setenv("MODELYARD_NOTIFY__WEBHOOK_URL", webhook.url)
    raw = settings.storage_path / "raw"
    for day in DATES:
        write_partition(raw, date.fromisoformat(day), n=60)

    with running_airflow(settings, port=free_port()) as base_url:
        api = AirflowAPI.login_embedded(base_url, Path(settings.home) / "airflow", "admin")
        cli = subprocess.run(
            [str(VENV_BIN / "modelyard"), "backfill", "--from", MISSING, "--to", DATES[-1]],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        lines = cli.stdout.splitlines()
        assert f"{MISSING}  skipped: no raw partition" in lines, cli.stdout
        published = published_versions(settings)
        assert set(published) == set(DATES)
        for day in DATES:
            assert f"{day}  {published[day]}  new" in lines, cli.stdout
        assert sorted(curated_events(settings)) == sorted(published.values())
        # Closed on return, not on Airflow's 30 s timer: the next backfill can start at once.
        backfills = api.get("/api/v2/backfills", dag_id="curate_dataset")["backfills"]
        assert [b["completed_at"] is not None for b in backfills] == [True]
        runs = _backfill_runs(api)
        assert [r["logical_date"][:10] for r in runs] == [MISSING, *DATES]
        _assert_one_at_a_time_in_date_order(runs)

        _two_new_dates_make_one_training_run(settings, api, raw, published, webhook)
        _check_registry_page_needs_login(settings, base_url, api)


FT = "/api/v2/dags/finetune_model"
NEW_DATES = ["2026-10-04", "2026-10-05"]


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _ti_state(api: AirflowAPI, run_id: str, task: str) -> str | None:
    return api.get(f"{FT}/dagRuns/{quoted(run_id)}/taskInstances/{task}")["state"]


def _finished(api: AirflowAPI, run_id: str) -> dict:
    return _wait(
        lambda: (r := api.get(f"{FT}/dagRuns/{quoted(run_id)}"))["state"] in TERMINAL and r,
        f"finetune_model run {run_id} to finish",
    )


TERMINAL = ("success", "failed")


def _gpu_slots(api: AirflowAPI, slots: int) -> None:
    body = {"pool": "gpu", "slots": slots, "include_deferred": False}  # Airflow wants them all
    api.request("PATCH", "/api/v2/pools/gpu", params={"update_mask": "slots"}, json=body)


def _two_new_dates_make_one_training_run(
    settings, api: AirflowAPI, raw: Path, published: dict[str, str], webhook
) -> None:
    from mlflow import MlflowClient

    from modelyard.registry import tags
    from modelyard.registry.ledger import read_ledger

    _gpu_slots(api, 0)  # the GPU is busy elsewhere
    api.patch(FT, {"is_paused": False})
    waiting = api.post(f"{FT}/dagRuns", {"logical_date": None, "conf": {}})["dag_run_id"]
    _wait(
        lambda: (
            _ti_state(api, waiting, "not_trained_yet") == "success"
            and _ti_state(api, waiting, "train") in ("scheduled", "queued")
        ),
        "the operator's run to wait for the GPU pool",
    )
    for day in NEW_DATES:
        write_partition(raw, date.fromisoformat(day), n=60)
    # Someone's backfill that ran nothing (every date had run) stays open, blocking the DAG's
    # next backfill (409), until Airflow's timer closes it: the next backfill closes it itself.
    idle = api.post(
        "/api/v2/backfills",
        {
            "dag_id": "curate_dataset",
            "from_date": f"{DATES[0]}T00:00:00Z",
            "to_date": f"{DATES[-1]}T00:00:00Z",
            "reprocess_behavior": "none",
        },
    )
    assert idle["completed_at"] is None
    outcomes = run_backfill(
        settings, date.fromisoformat(NEW_DATES[0]), date.fromisoformat(NEW_DATES[-1]), out=print
    )
    assert [o.status for o in outcomes] == ["new", "new"]
    new_versions = [o.version for o in outcomes]
    idle = api.get(f"/api/v2/backfills/{idle['id']}")
    assert idle["completed_at"] and idle["is_paused"]  # closed by cancelling: not by the timer
    # The operator cancels the waiting run; the GPU frees up.
    api.patch(f"{FT}/dagRuns/{quoted(waiting)}", {"state": "failed"})
    _gpu_slots(api, 1)

    def asset_runs() -> list[dict]:
        runs = api.get(f"{FT}/dagRuns", run_type="asset_triggered")["dag_runs"]
        return [r for r in runs if r["run_type"] == "asset_triggered"]

    run_id = _wait(asset_runs, "an Asset-triggered finetune_model run")[0]["dag_run_id"]
    run = _finished(api, run_id)
    assert len(asset_runs()) == 1  # two new dates, one training run
    events = api.get(f"{FT}/dagRuns/{quoted(run_id)}/upstreamAssetEvents")["asset_events"]
    assert {e["extra"]["version"] for e in events} >= {new_versions[0]}

    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    (mv,) = client.search_model_versions(f"name='{settings.registered_model}'")
    every_day = [published[d] for d in DATES] + new_versions
    assert json.loads(mv.tags[tags.SNAPSHOT_VERSIONS]) == every_day  # both new, all history
    assert mv.tags[tags.DATASET_VERSION] == new_versions[-1]
    # Refused: registered, the gate task failed, the run says why, the webhook heard it.
    assert mv.tags[tags.GATE_DECISION] == "failed"
    assert run["state"] == "failed" and _ti_state(api, run_id, "register") == "success"
    assert _ti_state(api, run_id, "gate") == "failed"
    assert run["note"].startswith(f"gate refused version {mv.version} of ")
    assert [(a["event"], a["run_id"]) for a in webhook.received] == [("refused", run_id)]
    (entry,) = read_ledger(client, settings.registered_model)
    assert entry["actor"] == "airflow:finetune_model"  # no person triggered it

    # The operator tries again: same snapshot, same recipe, nothing trains.
    again = api.post(f"{FT}/dagRuns", {"logical_date": None, "conf": {}})["dag_run_id"]
    rerun = _finished(api, again)
    assert rerun["state"] == "success"
    assert _ti_state(api, again, "train") == "skipped"
    assert f"already trained as version {mv.version}" in rerun["note"]
    assert len(client.search_model_versions(f"name='{settings.registered_model}'")) == 1


def _check_registry_page_needs_login(settings, base_url: str, api: AirflowAPI) -> None:
    """The plugin page is served by the API server and refuses anonymous requests."""
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{base_url}/modelyard/status.json", timeout=30)
    assert anonymous.value.code == 401
    assert api.get("/modelyard/status.json")["model"] == settings.registered_model
