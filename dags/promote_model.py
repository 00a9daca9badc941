"""Move a model version staging → canary → production, or roll production back.

Every transition is gated (a version must hold the previous stage and have passed the
evaluation gate) and appended to the promotion ledger. When the model's settings ask for it,
promotion to production waits for a human approval in the Airflow UI.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, dag, get_current_context, task

from modelyard.settings import get_settings

ACTOR = "airflow:promote_model"


@dag(
    dag_id="promote_model",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # transitions are also locked in the registry; this keeps the UI tidy
    tags=["modelyard", "registry"],
    doc_md=__doc__,
    params={
        "rollback": Param(
            False,
            type="boolean",
            description="point production back at the last known good version",
        ),
        "to": Param("canary", enum=["canary", "production"]),
        "version": Param(
            "", type="string", description="empty = the version holding the stage below"
        ),
        "reason": Param("promoted from the Airflow UI", type="string"),
    },
)
def promote_model():
    @task.branch
    def route(params: dict | None = None) -> str:
        from modelyard.registry import approval_required

        if params["rollback"]:
            return "rollback"
        if params["to"] == "production" and approval_required(get_settings()):
            return ["approve", "promote"]  # promote then waits for the human's answer
        return "promote"

    approve = ApprovalOperator(
        task_id="approve",
        subject="Promote {{ params.version or 'the canary' }} to production?",
        body="Check the canary's live metrics and the gate report in MLflow before approving.",
    )

    @task(trigger_rule="none_failed_min_one_success")
    def promote(params: dict | None = None) -> dict:
        from modelyard.registry import promote as promote_version

        return promote_version(
            get_settings(),
            to=params["to"],
            actor=ACTOR,
            reason=params["reason"],
            dag_run_id=get_current_context()["run_id"],
            version=params["version"] or None,
        )

    @task
    def rollback(params: dict | None = None) -> dict:
        from modelyard.registry import rollback as rollback_production

        return rollback_production(
            get_settings(),
            actor=ACTOR,
            reason=params["reason"],
            dag_run_id=get_current_context()["run_id"],
        )

    branch = route()
    promoted = promote()
    branch >> [approve, promoted]
    approve >> promoted
    branch >> rollback()


promote_model()
