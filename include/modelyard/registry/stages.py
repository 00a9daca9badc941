"""Model versions and their stages: registration, promotion, rollback.

Stages are MLflow aliases (``staging`` -> ``canary`` -> ``production``): an alias names one
version at a time, so "which version is production" has one answer by construction. Each move
happens under :func:`modelyard.registry.lock.transition_lock`, re-reads the aliases inside the
lock, and is appended to the ledger (:mod:`modelyard.registry.ledger`). A version whose gate
failed can never hold an alias.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from modelyard.registry import tags
from modelyard.registry.artifacts import client_for, log_model_dir
from modelyard.registry.ledger import append_entry, read_ledger
from modelyard.registry.lock import transition_lock
from modelyard.settings import Settings

PREVIOUS_STAGE = {"canary": "staging", "production": "canary"}


def approval_required(settings: Settings) -> bool:
    """Whether production needs a human approval (the promote DAG waits on a HITL task)."""
    return settings.gate.require_human_approval


def git_sha() -> str:
    """HEAD of the checkout the code runs from, "unknown" outside a git repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name, description="modelyard fine-tuned adapters")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        version = client.get_registered_model(name).aliases.get(alias)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ValueError(f"no model named {name} is registered yet") from exc
        raise
    return None if version is None else str(version)


def _require_passed(client: MlflowClient, name: str, version: str) -> None:
    mv = client.get_model_version(name, version)
    if mv.tags.get(tags.GATE_DECISION) != "passed":
        failed = mv.tags.get(tags.GATE_FAILED) or "no gate decision recorded"
        raise PermissionError(
            f"version {version} of {name} failed the gate and can hold no alias; failed: {failed}"
        )


def register_candidate(
    train_result: dict,
    eval_report: dict,
    dataset_manifest: dict,
    airflow_ctx: dict,
    settings: Settings,
) -> dict[str, Any]:
    """Register the candidate as a model version with lineage tags; ``staging`` if it passed.

    Idempotent per training run, so an Airflow retry returns the version the first try made.
    """
    client = client_for(settings)
    name = settings.registered_model
    run_id = train_result["mlflow_run_id"]
    ensure_registered_model(client, name)
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        mv = existing[0]
        return {
            "name": name,
            "version": str(mv.version),
            "source": mv.source,
            "staging": mv.tags.get(tags.GATE_DECISION) == "passed",
            "ledger": None,
        }
    gate = eval_report["gate"]
    passed = bool(gate["passed"])
    metrics = eval_report["candidate"]["metrics"]
    suite = eval_report["suite_version"]
    incumbent = eval_report.get("incumbent", {})
    source = log_model_dir(
        client,
        run_id,
        train_result["adapter_dir"],
        train_result["base_model"],
        train_result.get("base_revision"),
    )
    version_tags = {
        tags.DATASET_VERSION: dataset_manifest["version"],
        tags.DATASET_HASH: dataset_manifest.get("content_hash", ""),
        tags.BASE_MODEL: train_result["base_model"],
        tags.BASE_REVISION: str(train_result.get("base_revision") or ""),
        tags.CONFIG_HASH: train_result.get("config_hash", ""),
        tags.GIT_SHA: git_sha(),
        tags.SUITE_VERSION: suite,
        tags.METRICS: json.dumps(metrics, sort_keys=True),
        tags.scores_tag(suite): json.dumps(metrics, sort_keys=True),
        tags.GATE_DECISION: "passed" if passed else "failed",
        tags.GATE_FAILED: ",".join(gate["failed"]),
        tags.GATE_MARGINS: json.dumps({c["name"]: c["margin"] for c in gate.get("checks", [])}),
        tags.GATE_INCUMBENT: json.dumps(
            {k: incumbent.get(k) for k in ("label", "version", "metrics")}, sort_keys=True
        ),
        tags.GATE_REPORT: eval_report.get("artifacts", {}).get("report", ""),
        tags.DAG_ID: str(airflow_ctx.get("dag_id", "")),
        tags.DAG_RUN_ID: str(airflow_ctx.get("run_id", "")),
        tags.MLFLOW_RUN_ID: run_id,
    }
    with transition_lock(settings):
        mv = client.create_model_version(
            name,
            source,
            run_id=run_id,
            tags=version_tags,
            description=f"dataset {dataset_manifest['version']}, suite {suite}",
        )
        version = str(mv.version)  # MLflow 3 hands out versions as ints; modelyard speaks str
        if passed:
            client.set_registered_model_alias(name, "staging", version)
        entry = append_entry(
            client,
            name,
            actor=airflow_ctx.get("actor"),
            action="register",
            version=version,
            from_stage=None,
            to_stage="staging" if passed else None,
            from_version=None,
            gate="passed" if passed else "failed",
            failed=gate["failed"],
            reason="gate passed" if passed else "gate failed",
            dag_id=airflow_ctx.get("dag_id"),
            dag_run_id=airflow_ctx.get("run_id"),
        )
    return {"name": name, "version": version, "staging": passed, "ledger": entry, "source": source}


def promote(
    settings: Settings,
    to: str,
    actor: str,
    reason: str,
    dag_run_id: str | None = None,
    version: str | int | None = None,
) -> dict[str, Any]:
    """Move a version up one stage: staging -> canary, or canary -> production.

    Without ``version`` the one holding the previous stage moves. The version must hold the
    previous stage at the moment the lock is held, so a racing promotion finds it moved and fails.
    """
    if to not in PREVIOUS_STAGE:
        raise ValueError(f"can promote to {' or '.join(PREVIOUS_STAGE)}, not {to!r}")
    source_stage = PREVIOUS_STAGE[to]
    client = client_for(settings)
    name = settings.registered_model
    with transition_lock(settings):
        holder = _alias_version(client, name, source_stage)
        target = str(version) if version is not None else holder
        if target is None:
            raise ValueError(f"no version of {name} holds {source_stage}: nothing to promote")
        _require_passed(client, name, target)
        if holder != target:
            raise ValueError(
                f"version {target} of {name} does not hold {source_stage} "
                f"(held by {holder or 'none'}); promote it to {source_stage} first"
            )
        previous = _alias_version(client, name, to)
        client.set_registered_model_alias(name, to, target)
        client.delete_registered_model_alias(name, source_stage)
        if to == "production" and previous and previous != target:
            client.set_registered_model_tag(name, tags.PREVIOUS_PRODUCTION, previous)
        entry = append_entry(
            client,
            name,
            actor=actor,
            action="promote",
            version=target,
            from_stage=source_stage,
            to_stage=to,
            from_version=previous,
            reason=reason,
            dag_id=None,
            dag_run_id=dag_run_id,
        )
    return {"name": name, "version": target, "stage": to, "from_version": previous, "ledger": entry}


def rollback_target(ledger: list[dict], current: str) -> str | None:
    """The last version that held production before ``current`` and was never rolled back from."""
    bad = {e["from_version"] for e in ledger if e["action"] == "rollback"} | {current}
    history = [e["version"] for e in ledger if e.get("to_stage") == "production"]
    return next((v for v in reversed(history) if v not in bad), None)


def rollback(
    settings: Settings, actor: str, reason: str, dag_run_id: str | None = None
) -> dict[str, Any]:
    """Point ``production`` back at the last known good version, in one step."""
    client = client_for(settings)
    name = settings.registered_model
    with transition_lock(settings):
        current = _alias_version(client, name, "production")
        if current is None:
            raise ValueError(f"{name} has no production version to roll back")
        target = rollback_target(read_ledger(client, name), current)
        if target is None:
            raise ValueError(
                f"the ledger of {name} has no earlier production version than "
                f"{current} to roll back to"
            )
        _require_passed(client, name, target)
        client.set_registered_model_alias(name, "production", target)
        client.set_model_version_tag(name, current, tags.ROLLED_BACK, "true")
        client.set_registered_model_tag(name, tags.PREVIOUS_PRODUCTION, current)
        entry = append_entry(
            client,
            name,
            actor=actor,
            action="rollback",
            version=target,
            from_stage="production",
            to_stage="production",
            from_version=current,
            reason=reason,
            dag_id=None,
            dag_run_id=dag_run_id,
        )
    return {"name": name, "version": target, "rolled_back_from": current, "ledger": entry}
