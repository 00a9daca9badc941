"""Fine-tune a candidate on a curated dataset version, evaluate it against the incumbent,
register it with lineage and, when the gate passes, give it the ``staging`` alias.

Scheduled on the curated-dataset Asset; also triggerable from the UI with typed Params (the
common training knobs: backend, 4-bit, LoRA rank, learning rate, steps, batch, export...).
The training task runs on queue ``gpu`` in pool ``gpu`` and resumes from its last
checkpoint when retried (the run directory is named after the DAG run).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from modelyard.assets import CURATED_DATASET, REGISTERED_VERSION
from modelyard.settings import get_settings
from modelyard.training import trigger_params

_training = get_settings().training


@dag(
    dag_id="finetune_model",
    schedule=[CURATED_DATASET],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["modelyard", "training"],
    doc_md=__doc__,
    # Generated from the trainer's schema (types, bounds, choices, descriptions); every Param
    # is nullable and empty means "the settings value", so the form submits as it opens.
    params={name: Param(**spec) for name, spec in trigger_params(get_settings()).items()},
)
def finetune_model():
    @task
    def prepare(params: dict | None = None, triggering_asset_events=None) -> dict:
        from modelyard.catalog import resolve_training_input

        events = triggering_asset_events[CURATED_DATASET] if triggering_asset_events else []
        return resolve_training_input(
            params, [e.extra for e in events], get_current_context()["run_id"]
        )

    @task(
        queue="gpu",
        pool="gpu",
        retries=2,
        retry_delay=timedelta(minutes=1),
        retry_exponential_backoff=2.0,
        execution_timeout=timedelta(minutes=_training.timeout_minutes),
    )
    def train(plan: dict) -> dict:
        from modelyard.training import run_trainer

        return run_trainer(plan["trainer_config"], get_settings())

    @task
    def evaluate(plan: dict, trained: dict) -> dict:
        from modelyard.evaluation import evaluate_candidate

        return evaluate_candidate(trained, get_settings(), plan["dataset"])

    @task(outlets=[REGISTERED_VERSION])  # auto_canary (dags/canary_analysis.py) consumes it
    def register(plan: dict, trained: dict, report: dict) -> dict:
        from modelyard.registry import register_candidate

        ctx = get_current_context()
        airflow_ctx = {"dag_id": ctx["dag"].dag_id, "run_id": ctx["run_id"]}
        result = register_candidate(trained, report, plan["dataset"], airflow_ctx, get_settings())
        extra = {"version": result["version"], "staging": result["staging"]}
        ctx["outlet_events"][REGISTERED_VERSION].extra = extra
        return result

    plan = prepare()
    trained = train(plan)
    register(plan, trained, evaluate(plan, trained))


finetune_model()
