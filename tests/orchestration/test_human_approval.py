"""Promotion to production waits for a human in the Airflow UI when the model asks for it.

Runs `promote_model` under a real scheduler: the approval task parks as `awaiting_input`;
a rejection leaves production untouched, an approval (the same API call the UI's approval
form makes) promotes the canary.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from evaluation.helpers import eval_sample, good_adapter, publish_dataset, train_result  # noqa: F401

from modelyard.airflow_env import airflow, running_airflow
from tests.net import free_port
from tests.orchestration.api import AirflowAPI

pytestmark = pytest.mark.airflow
RUNS = "/api/v2/dags/promote_model/dagRuns"
HUMAN_DELAY_S = 8


@pytest.fixture
def canary_version(airflow_settings, good_adapter, eval_sample, tiny_model):  # noqa: F811
    """A gated, registered version holding `canary`, as finetune + promote would leave it."""
    from modelyard.evaluation import evaluate_candidate
    from modelyard.registry import promote, register_candidate

    settings = airflow_settings
    manifest = publish_dataset(
        settings.storage, "ds-approval", eval_sample["train"], eval_sample["eval"]
    )
    trained = train_result(settings, good_adapter, tiny_model, "approval")
    report = evaluate_candidate(trained, settings, manifest)
    registered = register_candidate(
        trained, report, manifest, {"dag_id": "finetune_model", "run_id": "t"}, settings
    )
    promote(settings, to="canary", actor="test", reason="setup")
    return registered["version"]


def _run_until_approval(api: AirflowAPI) -> str:
    run_id = api.post(
        RUNS, {"logical_date": None, "conf": {"to": "production", "reason": "ship it"}}
    )["dag_run_id"]
    approve = f"{RUNS}/{run_id}/taskInstances/approve"
    api.wait_for(
        lambda: api.get(approve)["state"] == "awaiting_input",
        "the approval task to wait for a human",
    )
    # A human answers in seconds. An answer within the same scheduler loop that handles the
    # parked attempt's executor event races Airflow 3.3 (the run fails as "state changed
    # externally"), so give the scheduler that loop, as any real reviewer would.
    time.sleep(HUMAN_DELAY_S)
    return run_id


def _answer(api: AirflowAPI, run_id: str, option: str) -> str:
    api.patch(f"{RUNS}/{run_id}/taskInstances/approve/-1/hitlDetails", {"chosen_options": [option]})
    return api.wait_for(
        lambda: (s := api.get(f"{RUNS}/{run_id}")["state"]) in ("success", "failed") and s,
        "the promote_model run to finish",
    )


def test_production_waits_for_a_human(airflow_settings, canary_version, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MODELYARD_GATE__REQUIRE_HUMAN_APPROVAL", "true")
    settings = airflow_settings
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    with running_airflow(settings, port=free_port()) as base_url:
        airflow(["dags", "unpause", "promote_model"], settings, capture=True)
        api = AirflowAPI(base_url, Path(settings.home) / "airflow")

        rejected = _run_until_approval(api)
        assert _answer(api, rejected, "Reject") == "success"
        promote_ti = api.get(f"{RUNS}/{rejected}/taskInstances/promote")
        assert promote_ti["state"] == "skipped"
        assert "production" not in client.get_registered_model(settings.registered_model).aliases

        approved = _run_until_approval(api)
        assert _answer(api, approved, "Approve") == "success"
        aliases = client.get_registered_model(settings.registered_model).aliases
        assert str(aliases["production"]) == str(canary_version)
