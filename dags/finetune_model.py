"""Fine-tune a candidate on a training snapshot, evaluate it against the incumbent, register it
with lineage and, when the gate passes, give it the ``staging`` alias.

Scheduled on the curated-dataset Asset; also triggerable from the UI with typed Params (the
common training knobs: backend, 4-bit, LoRA rank, learning rate, steps, batch, export...).
``prepare`` builds the snapshot: every published version up to the triggering date (all the
Asset events of the run, the ``dataset_version`` Param's date, or the latest), see
``modelyard.tasks.snapshots``. A snapshot and recipe already registered end the run there
(``not_trained_yet``, its note names the version). The training task runs on queue ``gpu`` in
pool ``gpu`` and resumes from its last checkpoint when retried (the run directory is named
after the DAG run). ``gate`` fails the run when the gate refused the candidate, after
``register`` recorded it; a refusal alerts through ``settings.notify``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from modelyard.assets import CURATED_DATASET, REGISTERED_VERSION
from modelyard.notify import ModelyardNotifier
from modelyard.settings import get_settings
from modelyard.training import trigger_params

_training = get_settings().training
log = logging.getLogger(__name__)


def _run_note(note: str) -> None:
    from modelyard.notify import set_run_note

    ctx = get_current_context()
    set_run_note(ctx["dag"].dag_id, ctx["run_id"], note, get_settings())


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
        from modelyard.tasks.catalog import InvalidDatasetVersion
        from modelyard.tasks.snapshots import plan_training
        from trainer.config import ConfigError

        events = triggering_asset_events[CURATED_DATASET] if triggering_asset_events else []
        try:
            return plan_training(
                params or {},
                [e.extra for e in events],
                get_current_context()["run_id"],
                get_settings(),
            )
        except (InvalidDatasetVersion, ConfigError, FileNotFoundError) as exc:
            raise AirflowFailException(str(exc)) from None  # bad input: one line, no retry

    @task.short_circuit
    def not_trained_yet(plan: dict) -> bool:
        from modelyard.tasks.snapshots import already_trained

        note = already_trained(plan, get_settings())
        if note:
            log.info("%s", note)
            _run_note(note)
        return note is None

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
        from trainer.config import ConfigError

        try:
            return run_trainer(plan["trainer_config"], get_settings())
        except ConfigError as exc:  # the trainer refused its config: a retry would too
            raise AirflowFailException(f"trainer config error: {exc}") from None

    @task
    def evaluate(plan: dict, trained: dict) -> dict:
        from modelyard.evaluation import evaluate_candidate

        return evaluate_candidate(
            trained, get_settings(), plan["dataset"], plan["trainer_config"]["train_file"]
        )

    @task(outlets=[REGISTERED_VERSION])  # auto_canary (dags/canary_analysis.py) consumes it
    def register(plan: dict, trained: dict, report: dict) -> dict:
        from modelyard.registry import register_candidate
        from modelyard.registry.identity import airflow_actor

        ctx = get_current_context()
        airflow_ctx = {
            "dag_id": ctx["dag"].dag_id,
            "run_id": ctx["run_id"],
            "actor": airflow_actor(ctx),
        }
        result = register_candidate(trained, report, plan["dataset"], airflow_ctx, get_settings())
        extra = {"version": result["version"], "staging": result["staging"]}
        ctx["outlet_events"][REGISTERED_VERSION].extra = extra
        return result

    @task(retries=0, on_failure_callback=ModelyardNotifier("refused"))
    def gate(registered: dict, report: dict) -> str:
        from modelyard.notify import refusal

        lines = refusal(registered, report)
        if lines is None:
            return f"gate passed: version {registered['version']} holds staging"
        for line in lines:
            log.error("%s", line)
        _run_note("\n".join(lines))
        raise AirflowFailException(lines[0])

    plan = prepare()
    trained = train(plan)
    not_trained_yet(plan) >> trained
    report = evaluate(plan, trained)
    gate(register(plan, trained, report), report)


finetune_model()
