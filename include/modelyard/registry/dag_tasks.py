"""The ``promote_model`` DAG's tasks, one function each, so the DAG file only wires them.

They take the Airflow task context as a plain mapping (``dag_run``, ``run_id``, ``ti``) and
never import Airflow. Identities come from Airflow, not from Params: the actor is the person
who triggered the run and an approval's actor is whoever answered the approval task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.conf import unknown_keys
from modelyard.registry.approval import approval_required
from modelyard.registry.identity import airflow_actor, hitl_responder
from modelyard.registry.stages import approve, promote, rollback
from modelyard.settings import Settings

APPROVAL_TASK = "approve"
PARAMS = ("to", "version", "rollback", "reason")  # promote_model's Params


def route(settings: Settings, params: Mapping[str, Any]) -> str | list[str]:
    """Which tasks run: rollback, promote, or the approval task and then promote. A conf key
    no Param declares fails the run first (a misspelt ``version`` would move another one)."""
    problem = unknown_keys(params, PARAMS)
    if problem:
        raise ValueError(problem)
    if params["rollback"]:
        return "rollback"
    if params["to"] == "production" and approval_required(settings):
        return [APPROVAL_TASK, "promote"]  # promote waits for the human's answer
    return "promote"


def promote_from_run(
    settings: Settings, params: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Record the approval task's answer (if it ran) as an approval, then promote.

    The library decides whether production may move; an approval answered by the person who
    triggered the run is recorded but does not count (four-eyes).
    """
    dag_id, run_id = context["dag_run"].dag_id, context["run_id"]
    version = params["version"]
    answer = context["ti"].xcom_pull(task_ids=APPROVAL_TASK)
    if answer is not None:
        responder = hitl_responder(answer)
        if responder is None:
            raise PermissionError("the approval task was answered by no person: not an approval")
        version = approve(
            settings,
            actor=responder,
            reason=f"approved in the Airflow UI: {params['reason']}",
            version=version,
            dag_id=dag_id,
            dag_run_id=run_id,
        )["version"]
    return promote(
        settings,
        to=params["to"],
        actor=airflow_actor(context),
        reason=params["reason"],
        version=version,
        dag_id=dag_id,
        dag_run_id=run_id,
    )


def rollback_from_run(
    settings: Settings, params: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Roll production back, recorded as done by the person who triggered the run."""
    return rollback(
        settings,
        actor=airflow_actor(context),
        reason=params["reason"],
        dag_id=context["dag_run"].dag_id,
        dag_run_id=context["run_id"],
    )
