"""Model versions and their stages: registration, approval, promotion, rollback.

Stages are MLflow aliases (``staging`` -> ``canary`` -> ``production``): an alias names one
version at a time, so "which version is production" has one answer by construction. Each move
happens under :func:`modelyard.registry.lock.transition_lock`, re-reads the aliases inside the
lock, and is appended to the ledger (:mod:`modelyard.registry.ledger`). A version whose gate
failed can never hold an alias, and production needs a recorded human approval when
``promotion.require_human_approval`` says so (:mod:`modelyard.registry.approval`). These
functions are the one path every caller (DAGs, CLI, the UI's actions) moves aliases through.
"""

from __future__ import annotations

import json
import re
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from modelyard.registry import tags
from modelyard.registry.approval import approvable, approval_required, require_approval
from modelyard.registry.artifacts import client_for, log_model_dir
from modelyard.registry.connection import reports_store_errors, require_store
from modelyard.registry.identity import os_user
from modelyard.registry.ledger import append_entry, read_ledger
from modelyard.registry.lock import lock_target, transition_lock
from modelyard.settings import Settings
from modelyard.storage import local_dir

PREVIOUS_STAGE = {"canary": "staging", "production": "canary"}
MAX_REASON_CHARS = 2000
MAX_NAME_CHARS = 200


def version_ref(version: str | int | None) -> str | None:
    """A version number as MLflow spells it ("3"), None for "not given"; refuses anything else."""
    if version is None or version == "":
        return None
    ref = str(version).strip()
    # ASCII digits only ("٣".isdigit() is True) and within the stores' 64-bit integer column.
    if not re.fullmatch(r"[0-9]{1,19}", ref) or not 1 <= int(ref) < 2**63:
        raise ValueError(f"a version is a number such as 3, not {version!r}")
    return str(int(ref))


def _check_text(reason: str, on_behalf_of: str | None) -> None:
    """Bounded free text: MLflow refuses tag values past its limit with a long traceback."""
    if len(reason) > MAX_REASON_CHARS:
        raise ValueError(
            f"the reason has {len(reason)} characters; keep it under {MAX_REASON_CHARS}"
        )
    if on_behalf_of is not None and not 0 < len(on_behalf_of.strip()) <= MAX_NAME_CHARS:
        raise ValueError(f"on_behalf_of must name someone in 1..{MAX_NAME_CHARS} characters")
    for field, text in (("the reason", reason), ("on_behalf_of", on_behalf_of or "")):
        if not printable_line(text):
            raise ValueError(
                f"{field} must be one line of printable text (no newlines or control characters)"
            )


def printable_line(text: str) -> bool:
    """No newline, control or format character: free text that cannot forge a line of the
    status table's ledger (the registry page checks its form with this too)."""
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


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


def _require_no_failed_canary(client: MlflowClient, name: str, version: str) -> None:
    """A version a canary analysis rolled back never moves again: only a new version (which
    goes through the gate again) can. The tag is the analysis's record, see modelyard.canary."""
    mv = client.get_model_version(name, version)
    if mv.tags.get(tags.CANARY_VERDICT) == "failed":
        raise PermissionError(
            f"version {version} of {name} failed its canary analysis and was rolled back; "
            "it cannot be promoted again: register a new version through the gate"
        )


def _require_passed(client: MlflowClient, name: str, version: str) -> None:
    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ValueError(f"{name} has no version {version}") from None
        raise
    if mv.tags.get(tags.GATE_DECISION) != "passed":
        failed = mv.tags.get(tags.GATE_FAILED) or "no gate decision recorded"
        raise PermissionError(
            f"version {version} of {name} failed the gate and can hold no alias; failed: {failed}"
        )


def _snapshot_tags(snapshot: dict | None) -> dict[str, str]:
    """Lineage of the training snapshot (``modelyard.tasks.snapshots``) trained on."""
    if not snapshot:
        return {}
    return {
        tags.SNAPSHOT: snapshot["id"],
        tags.SNAPSHOT_VERSIONS: json.dumps(list(snapshot["versions"])),
    }


@reports_store_errors
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
    lock_target(settings)  # refuse before uploading anything when no lock can guard the move
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
    adapter_dir, adapter_uri = train_result["adapter_dir"], train_result.get("adapter_uri")
    with local_dir(adapter_dir, adapter_uri, settings) as adapter:
        base, revision = train_result["base_model"], train_result.get("base_revision")
        source = log_model_dir(client, run_id, str(adapter), base, revision)
    version_tags = {
        tags.DATASET_VERSION: dataset_manifest["version"],
        tags.DATASET_HASH: dataset_manifest.get("content_hash", ""),
        **_snapshot_tags(dataset_manifest.get("snapshot")),
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
    dag_id = airflow_ctx.get("dag_id")
    actor = airflow_ctx.get("actor") or (f"airflow:{dag_id}" if dag_id else os_user())
    with transition_lock(settings) as held:
        held.confirm()
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
            actor=actor,
            action="register",
            version=version,
            from_stage=None,
            to_stage="staging" if passed else None,
            from_version=None,
            gate="passed" if passed else "failed",
            failed=gate["failed"],
            reason="gate passed" if passed else "gate failed",
            dag_id=dag_id,
            dag_run_id=airflow_ctx.get("run_id"),
        )
    return {"name": name, "version": version, "staging": passed, "ledger": entry, "source": source}


@reports_store_errors
def promote(
    settings: Settings,
    to: str,
    actor: str,
    reason: str,
    dag_run_id: str | None = None,
    version: str | int | None = None,
    on_behalf_of: str | None = None,
    dag_id: str | None = None,
) -> dict[str, Any]:
    """Move a version up one stage: staging -> canary, or canary -> production.

    Without ``version`` the one holding the previous stage moves. The version must hold the
    previous stage at the moment the lock is held, so a racing promotion finds it moved and fails.
    Production needs a standing approval by someone other than ``actor`` when
    ``promotion.require_human_approval`` is set.
    """
    if to not in PREVIOUS_STAGE:
        raise ValueError(f"can promote to {' or '.join(PREVIOUS_STAGE)}, not {to!r}")
    requested = version_ref(version)
    _check_text(reason, on_behalf_of)
    source_stage = PREVIOUS_STAGE[to]
    name = settings.registered_model
    require_store(settings)
    client = client_for(settings)
    with transition_lock(settings) as held:
        holder = _alias_version(client, name, source_stage)
        target = requested or holder
        if target is None:
            raise ValueError(f"no version of {name} holds {source_stage}: nothing to promote")
        _require_passed(client, name, target)
        _require_no_failed_canary(client, name, target)
        if holder != target:
            raise ValueError(
                f"version {target} of {name} does not hold {source_stage} "
                f"(held by {holder or 'none'}); promote it to {source_stage} first"
            )
        approvals = []
        if to == "production" and approval_required(settings):
            approvals = require_approval(read_ledger(client, name), name, target, actor)
        previous = _alias_version(client, name, to)
        held.confirm()
        client.set_registered_model_alias(name, to, target)
        client.delete_registered_model_alias(name, source_stage)
        if to == "production" and previous and previous != target:
            client.set_registered_model_tag(name, tags.PREVIOUS_PRODUCTION, previous)
        entry = append_entry(
            client,
            name,
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="promote",
            version=target,
            from_stage=source_stage,
            to_stage=to,
            from_version=previous,
            reason=reason,
            approved_by=[a["actor"] for a in approvals],
            approvals=[a["id"] for a in approvals],
            dag_id=dag_id,
            dag_run_id=dag_run_id,
        )
    return {"name": name, "version": target, "stage": to, "from_version": previous, "ledger": entry}


@reports_store_errors
def approve(
    settings: Settings,
    actor: str,
    reason: str,
    version: str | int | None = None,
    on_behalf_of: str | None = None,
    dag_id: str | None = None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Record that ``actor`` approves the version in canary (or ``version``) for production.

    The approval is a ledger entry (who, which version, when, from which host or DAG run); it
    is what ``promote(to="production")`` looks for, see :mod:`modelyard.registry.approval`.
    """
    requested = version_ref(version)
    _check_text(reason, on_behalf_of)
    name = settings.registered_model
    require_store(settings)
    client = client_for(settings)
    with transition_lock(settings) as held:
        target = approvable(_alias_version(client, name, "canary"), requested, name)
        _require_passed(client, name, target)
        held.confirm()
        entry = append_entry(
            client,
            name,
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="approve",
            version=target,
            from_stage="canary",
            to_stage="production",
            from_version=None,
            reason=reason,
            dag_id=dag_id,
            dag_run_id=dag_run_id,
        )
    return {"name": name, "version": target, "ledger": entry}


def rollback_target(ledger: list[dict], current: str) -> str | None:
    """The last version that held production before ``current`` and was never rolled back from."""
    bad = {e["from_version"] for e in ledger if e["action"] == "rollback"} | {current}
    history = [
        e["version"]
        for e in ledger
        if e["to_stage"] == "production" and e["action"] in ("promote", "rollback")
    ]
    return next((v for v in reversed(history) if v not in bad), None)


@reports_store_errors
def rollback(
    settings: Settings,
    actor: str,
    reason: str,
    dag_run_id: str | None = None,
    on_behalf_of: str | None = None,
    dag_id: str | None = None,
    from_version: str | int | None = None,
) -> dict[str, Any]:
    """Point ``production`` back at the last known good version, in one step.

    No new approval is needed: the target already held production (the ledger says so), and
    was approved then whenever approval was required; an incident must not wait for a second
    person. The rollback is recorded with its actor like every other move.

    It rolls back ``from_version`` (default: the version in production when called). If
    production holds another by the time the lock is held, nothing moves: two people rolling
    back the same incident at once must not take production back two versions.
    """
    expected = version_ref(from_version)
    _check_text(reason, on_behalf_of)
    name = settings.registered_model
    require_store(settings)
    client = client_for(settings)
    if expected is None:
        expected = _alias_version(client, name, "production")
    with transition_lock(settings) as held:
        current = _alias_version(client, name, "production")
        if current is None:
            raise ValueError(f"{name} has no production version to roll back")
        if current != expected:
            raise ValueError(
                f"production of {name} is version {current}, not {expected}: it moved while "
                "this rollback waited (another rollback?); nothing changed"
            )
        target = rollback_target(read_ledger(client, name), current)
        if target is None:
            raise ValueError(
                f"the ledger of {name} has no earlier production version than "
                f"{current} to roll back to"
            )
        _require_passed(client, name, target)
        held.confirm()
        client.set_registered_model_alias(name, "production", target)
        client.set_model_version_tag(name, current, tags.ROLLED_BACK, "true")
        client.set_registered_model_tag(name, tags.PREVIOUS_PRODUCTION, current)
        entry = append_entry(
            client,
            name,
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="rollback",
            version=target,
            from_stage="production",
            to_stage="production",
            from_version=current,
            reason=reason,
            dag_id=dag_id,
            dag_run_id=dag_run_id,
        )
    return {"name": name, "version": target, "rolled_back_from": current, "ledger": entry}


@reports_store_errors
def rollback_canary(
    settings: Settings,
    version: str,
    actor: str,
    reason: str,
    report_uri: str = "",
    dag_id: str | None = None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Take the canary out after a failed analysis: alias removed, version marked for good.

    ``version`` must still hold ``canary`` under the lock (a person may have moved it since the
    analysis read the registry; then nothing happens and the caller hears why). The version is
    tagged ``modelyard.canary.verdict=failed`` so :func:`promote` refuses it from now on, and
    the ledger records the move like every other (``from_version`` = the version taken out, so
    a production rollback never picks it either).
    """
    ref = version_ref(version)
    assert ref is not None
    _check_text(reason, None)
    name = settings.registered_model
    require_store(settings)
    client = client_for(settings)
    with transition_lock(settings) as held:
        holder = _alias_version(client, name, "canary")
        if holder != ref:
            raise ValueError(
                f"version {ref} of {name} no longer holds canary (held by {holder or 'none'}): "
                "nothing rolled back"
            )
        held.confirm()
        client.set_model_version_tag(name, ref, tags.CANARY_VERDICT, "failed")
        client.delete_registered_model_alias(name, "canary")
        entry = append_entry(
            client,
            name,
            actor=actor,
            action="rollback",
            version=ref,
            from_stage="canary",
            to_stage=None,
            from_version=ref,
            reason=reason,
            report=report_uri or None,
            dag_id=dag_id,
            dag_run_id=dag_run_id,
        )
    return {"name": name, "version": ref, "rolled_back_from": "canary", "ledger": entry}
