"""Promotion to production waits for a second person in the Airflow UI when settings ask for it.

Runs `promote_model` under a real scheduler, with two Airflow users: `admin` triggers, `reviewer`
answers. The form's defaults submit as they are (staging -> canary); the approval task parks as
`awaiting_input`; a rejection leaves production untouched; an approval by the person who
triggered the run is recorded but refused (four-eyes); the reviewer's approval (the same API
call the UI's approval form makes) promotes the canary, and the ledger names both people.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from evaluation.helpers import eval_sample, good_adapter, publish_dataset, train_result  # noqa: F401

from modelyard.airflow_env import PROJECT_ROOT, airflow, running_airflow
from tests.net import free_port
from tests.orchestration.api import AirflowAPI

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]
RUNS = "/api/v2/dags/promote_model/dagRuns"
HUMAN_DELAY_S = 8


@pytest.fixture
def staged_version(airflow_settings, good_adapter, eval_sample, tiny_model):  # noqa: F811
    """A gated, registered version holding `staging`, as finetune_model leaves it."""
    from modelyard.evaluation import evaluate_candidate
    from modelyard.registry import register_candidate

    settings = airflow_settings
    manifest = publish_dataset(
        settings.storage, "ds-approval", eval_sample["train"], eval_sample["eval"]
    )
    trained = train_result(settings, good_adapter, tiny_model, "approval")
    report = evaluate_candidate(trained, settings, manifest)
    registered = register_candidate(
        trained, report, manifest, {"dag_id": "finetune_model", "run_id": "t"}, settings
    )
    assert registered["staging"]
    return registered["version"]


def test_promote_form_submits_with_its_defaults(airflow_settings) -> None:
    """Every Param is valid as shipped and explained; version is optional (nullable)."""
    from airflow.dag_processing.dagbag import DagBag

    params = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["promote_model"].params
    assert params.validate() == {
        "to": "canary",
        "version": None,
        "rollback": False,
        "reason": "from the Airflow UI",
    }
    assert "null" in params.get_param("version").schema["type"]
    assert all(len(params.get_param(k).description or "") > 30 for k in params)


def _finish(api: AirflowAPI, run_id: str) -> str:
    return api.wait_for(
        lambda: (s := api.get(f"{RUNS}/{run_id}")["state"]) in ("success", "failed") and s,
        "the promote_model run to finish",
    )


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
    return _finish(api, run_id)


def test_production_waits_for_a_second_person(airflow_settings, staged_version, monkeypatch):
    from mlflow import MlflowClient

    from modelyard.registry import status

    monkeypatch.setenv("MODELYARD_PROMOTION__REQUIRE_HUMAN_APPROVAL", "true")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,reviewer:admin")
    settings = airflow_settings
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    with running_airflow(settings, port=free_port()) as base_url:
        airflow(["dags", "unpause", "promote_model"], settings, capture=True)
        admin = AirflowAPI(base_url, Path(settings.home) / "airflow", user="admin")
        reviewer = AirflowAPI(base_url, Path(settings.home) / "airflow", user="reviewer")

        # The trigger form's defaults, untouched: the version in staging moves to canary.
        to_canary = admin.post(RUNS, {"logical_date": None, "conf": {}})["dag_run_id"]
        assert _finish(admin, to_canary) == "success"
        aliases = client.get_registered_model(settings.registered_model).aliases
        assert str(aliases["canary"]) == staged_version

        rejected = _run_until_approval(admin)
        assert _answer(reviewer, rejected, "Reject") == "success"
        assert admin.get(f"{RUNS}/{rejected}/taskInstances/promote")["state"] == "skipped"
        assert "production" not in client.get_registered_model(settings.registered_model).aliases

        self_approved = _run_until_approval(admin)
        assert _answer(admin, self_approved, "Approve") == "failed"
        assert admin.get(f"{RUNS}/{self_approved}/taskInstances/promote")["state"] == "failed"
        assert "production" not in client.get_registered_model(settings.registered_model).aliases

        approved = _run_until_approval(admin)
        assert _answer(reviewer, approved, "Approve") == "success"
        aliases = client.get_registered_model(settings.registered_model).aliases
        assert str(aliases["production"]) == staged_version

    moves = [
        (e["action"], e["actor"], e["dag_run_id"], e.get("approved_by"))
        for e in status(settings)["ledger"]
        if e["action"] != "register"
    ]
    assert moves == [
        ("promote", "admin", to_canary, []),
        ("approve", "admin", self_approved, None),  # recorded, and refused as a self-approval
        ("approve", "reviewer", approved, None),
        ("promote", "admin", approved, ["reviewer"]),
    ]
