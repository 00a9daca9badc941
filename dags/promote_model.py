"""Move a model version staging → canary → production, or roll production back.

Every transition is gated (a version must hold the previous stage and have passed the
evaluation gate) and appended to the promotion ledger under the name of the person who
triggered the run. When `promotion.require_human_approval` is on, production waits for a
person other than the one who triggered the run to approve the version in the approval task.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param, dag, get_current_context, task

from modelyard.notify import ModelyardNotifier
from modelyard.settings import get_settings


@dag(
    dag_id="promote_model",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # transitions are also locked in the registry; this keeps the UI tidy
    tags=["modelyard", "registry"],
    doc_md=__doc__,
    params={
        "to": Param(
            "canary",
            enum=["canary", "production"],
            title="Promote to",
            description="The stage to move a version into: canary takes the version now in "
            "staging, production takes the version now in canary. Ignored for a rollback.",
        ),
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version",
            description="The model version number to move, e.g. 3. Leave empty to move "
            "whichever version holds the stage below. Not used by a rollback.",
        ),
        "rollback": Param(
            False,
            type="boolean",
            title="Roll back production",
            description="Instead of promoting, point production back at the version that held "
            "it before the current one. Needs no version and no approval.",
        ),
        "reason": Param(
            "from the Airflow UI",
            type="string",
            minLength=1,
            maxLength=2000,
            title="Reason",
            description="Why, in a sentence; recorded in the promotion ledger with your name.",
        ),
    },
)
def promote_model():
    @task.branch
    def route(params: dict | None = None) -> str | list[str]:
        from modelyard.registry.dag_tasks import route as choose

        return choose(get_settings(), params)

    approve = ApprovalOperator(
        task_id="approve",
        subject="Promote {{ params.version or 'the canary' }} to production?",
        body="Check the canary's live metrics and the gate report in MLflow before approving. "
        "Your answer is recorded as the approval; it counts only if you did not trigger this run.",
    )

    @task(trigger_rule="none_failed_min_one_success")
    def promote(params: dict | None = None) -> dict:
        from modelyard.registry.dag_tasks import promote_from_run

        return promote_from_run(get_settings(), params, get_current_context())

    @task(on_success_callback=ModelyardNotifier("rollback"))
    def rollback(params: dict | None = None) -> dict:
        from modelyard.registry.dag_tasks import rollback_from_run

        return rollback_from_run(get_settings(), params, get_current_context())

    branch = route()
    promoted = promote()
    branch >> [approve, promoted]
    approve >> promoted
    branch >> rollback()


promote_model()
