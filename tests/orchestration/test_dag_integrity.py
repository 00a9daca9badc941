"""The DAG bundle loads cleanly and keeps its interface: ids, schedules, queues, pools, Params."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest

from modelyard.airflow_env import PROJECT_ROOT
from modelyard.registry.dag_tasks import PARAMS as PROMOTE_PARAMS
from modelyard.registry.dag_tasks import route

DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))
HEAVY = {"torch", "transformers", "mlflow", "datasets", "great_expectations", "peft", "trl"}


@pytest.fixture
def dagbag(airflow_settings):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_bundle_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {
        "curate_dataset",
        "finetune_model",
        "harvest_feedback",
        "promote_model",
        "canary_analysis",
        "auto_canary",
    }


def test_schedules(dagbag):
    from modelyard.assets import CURATED_DATASET

    curate = dagbag.dags["curate_dataset"]
    from airflow.sdk import CronDataIntervalTimetable

    assert isinstance(curate.timetable, CronDataIntervalTimetable)
    assert curate.timetable.expression == "0 0 * * *"
    assert curate.max_active_runs == 1
    finetune = dagbag.dags["finetune_model"]
    assert list(finetune.timetable.asset_condition.objects) == [CURATED_DATASET]
    assert dagbag.dags["promote_model"].timetable.can_be_scheduled is False
    canary = dagbag.dags["canary_analysis"]
    assert canary.timetable.expression == "*/15 * * * *" and canary.max_active_runs == 1
    assert not canary.catchup
    from modelyard.assets import REGISTERED_VERSION

    register = finetune.get_task("register")
    assert register.outlets == [REGISTERED_VERSION]
    auto = dagbag.dags["auto_canary"]
    assert list(auto.timetable.asset_condition.objects) == [REGISTERED_VERSION]


def test_training_runs_on_the_gpu_queue_and_pool(dagbag):
    dag = dagbag.dags["finetune_model"]
    train = dag.get_task("train")
    assert (train.queue, train.pool) == ("gpu", "gpu")
    assert train.retries >= 1 and train.retry_exponential_backoff
    assert train.execution_timeout is not None
    others = [t for t in dag.tasks if t.task_id != "train"]
    assert all(t.queue != "gpu" and t.pool != "gpu" for t in others)


def test_trigger_form_params(dagbag):
    params = dagbag.dags["finetune_model"].params
    assert {
        "dataset_version",
        "base_model",
        "backend",
        "load_in_4bit",
        "lora_r",
        "learning_rate",
        "max_steps",
        "batch_size",
        "grad_accum",
        "max_seq_length",
        "optim",
        "export",
        "gguf_quantization",
    } == set(params.keys())
    assert params.get_param("backend").schema["enum"] == [None, "auto", "hf", "unsloth"]
    assert set(params.validate().values()) == {None}  # the form submits as it opens
    promote = dagbag.dags["promote_model"].params
    assert promote["rollback"] is False and promote.get_param("to").schema["enum"] == [
        "canary",
        "production",
    ]
    assert set(promote.keys()) == set(PROMOTE_PARAMS)  # what its route task accepts


def test_a_misspelt_promote_key_fails_the_run_before_anything_moves(dagbag, airflow_settings):
    """Airflow merges conf keys into params unchecked: ``versoin: 3`` would promote the
    version holding canary, ``roll_back: true`` would promote instead of rolling back."""
    promote = dagbag.dags["promote_model"].params
    for conf in ({"to": "production", "versoin": 3}, {"roll_back": True}):
        merged = copy.deepcopy(promote)
        merged.update(conf)  # as Airflow applies a run's conf: unknown keys are added
        merged = merged.validate()
        with pytest.raises(ValueError, match=r"unknown conf key\(s\): (versoin|roll_back)"):
            route(airflow_settings, merged)


def test_curated_asset_is_emitted_only_by_announce(dagbag):
    from modelyard.assets import CURATED_DATASET

    dag = dagbag.dags["curate_dataset"]
    emitters = [t.task_id for t in dag.tasks if CURATED_DATASET in t.outlets]
    assert emitters == ["announce"]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_import_nothing_heavy_at_top_level(path: Path):
    tree = ast.parse(path.read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = {
        alias.name.split(".")[0]
        for node in top_level
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    names |= {
        node.module.split(".")[0]
        for node in top_level
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not names & HEAVY, f"{path.name} imports {names & HEAVY} at module level"


@pytest.mark.parametrize("dag_id", ["curate_dataset", "harvest_feedback"])
def test_a_run_curates_and_harvests_the_day_its_interval_starts(dagbag, dag_id):
    """Scheduled, backfilled or triggered with logical date D ([D-1, D), Airflow's inferred
    interval): curation, its sensor and the harvest all name the same, ended day."""
    from datetime import UTC, datetime

    from airflow.serialization.encoders import coerce_to_core_timetable

    from modelyard.conf import run_partition

    timetable = coerce_to_core_timetable(dagbag.dags[dag_id].timetable)
    manual = timetable.infer_manual_data_interval(run_after=datetime(2026, 10, 5, 14, tzinfo=UTC))
    assert run_partition(manual.start) == "2026-10-04"
    with pytest.raises(ValueError, match="no data interval"):
        run_partition(None)  # triggered without a logical date
