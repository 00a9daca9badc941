"""Everything the registry knows about the registered model: a JSON-able dict and a table."""

from __future__ import annotations

import json
from typing import Any

from mlflow.exceptions import MlflowException

from modelyard.registry import tags
from modelyard.registry.artifacts import client_for
from modelyard.registry.ledger import read_ledger
from modelyard.settings import Settings

LINEAGE = (
    tags.DATASET_VERSION,
    tags.DATASET_HASH,
    tags.BASE_MODEL,
    tags.BASE_REVISION,
    tags.CONFIG_HASH,
    tags.GIT_SHA,
    tags.DAG_ID,
    tags.DAG_RUN_ID,
    tags.MLFLOW_RUN_ID,
    tags.GATE_REPORT,
)


def _version_row(mv, aliases: list[str]) -> dict[str, Any]:
    t = mv.tags
    return {
        "version": str(mv.version),
        "aliases": sorted(aliases),
        "created_at": mv.creation_timestamp,
        "run_id": mv.run_id,
        "source": mv.source,
        "dataset_version": t.get(tags.DATASET_VERSION),
        "base_model": t.get(tags.BASE_MODEL),
        "suite_version": t.get(tags.SUITE_VERSION),
        "metrics": json.loads(t.get(tags.METRICS, "{}")),
        "scores_by_suite": {
            k.removeprefix(tags.SCORES_PREFIX): json.loads(v)
            for k, v in t.items()
            if k.startswith(tags.SCORES_PREFIX)
        },
        "gate_decision": t.get(tags.GATE_DECISION),
        "gate_failed": t.get(tags.GATE_FAILED) or "",
        "gate_margins": json.loads(t.get(tags.GATE_MARGINS, "{}")),
        "compared_with": json.loads(t.get(tags.GATE_INCUMBENT, "{}")),
        "rolled_back": t.get(tags.ROLLED_BACK) == "true",
        "lineage": {k: t.get(k) for k in LINEAGE},
    }


def status(settings: Settings) -> dict[str, Any]:
    """Aliases, every version with lineage, scores and gate decision, and the ledger."""
    client = client_for(settings)
    name = settings.registered_model
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return {
            "model": name,
            "exists": False,
            "aliases": {},
            "previous_production": None,
            "gate_override": None,
            "versions": [],
            "ledger": [],
        }
    aliases = {alias: str(version) for alias, version in model.aliases.items()}
    found = client.search_model_versions(f"name = '{name}'")
    versions = [
        _version_row(mv, [a for a, v in aliases.items() if v == str(mv.version)])
        for mv in sorted(found, key=lambda v: int(v.version))
    ]
    return {
        "model": name,
        "exists": True,
        "aliases": aliases,
        "previous_production": model.tags.get(tags.PREVIOUS_PRODUCTION),
        "gate_override": model.tags.get(tags.GATE),
        "versions": versions,
        "ledger": read_ledger(client, name),
    }


def find_versions(settings: Settings, dataset_version: str) -> list[str]:
    """Versions trained on ``dataset_version`` (to skip retraining what is registered)."""
    client = client_for(settings)
    found = client.search_model_versions(
        f"name = '{settings.registered_model}' and "
        f"tags.`{tags.DATASET_VERSION}` = '{dataset_version}'"
    )
    return sorted((str(mv.version) for mv in found), key=int)


def _scores(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3g}" for k, v in sorted(metrics.items()))


def _versus(metrics: dict[str, float], compared: dict[str, Any] | None) -> str:
    """``rouge_l 0.53 vs 0.018 (+0.51)`` for every metric both models were scored on."""
    if not compared:
        return "no incumbent scores stored"
    theirs = compared.get("metrics", {})
    pairs = [
        f"{k} {v:.3g} vs {theirs[k]:.3g} ({v - theirs[k]:+.2g})"
        for k, v in sorted(metrics.items())
        if k in theirs
    ]
    return f"vs {compared.get('label') or 'incumbent'}: " + ", ".join(pairs)


def format_status(state: dict[str, Any]) -> str:
    """The status dict as a table a person reads at a terminal."""
    if not state["exists"]:
        return f"{state['model']}: not registered yet"
    lines = [
        f"registered model: {state['model']}",
        "aliases: "
        + (", ".join(f"{a}=v{v}" for a, v in sorted(state["aliases"].items())) or "none"),
        f"previous production: {state['previous_production'] or '-'}",
        "",
        f"{'ver':>4}  {'aliases':<20} {'gate':<7} {'suite':<18} {'dataset':<16} scores",
    ]
    for v in state["versions"]:
        lineage = v["lineage"]
        gate = v["gate_decision"] or "-"
        if v["gate_failed"]:
            gate += f" ({v['gate_failed']})"
        lines.append(
            f"{v['version']:>4}  {','.join(v['aliases']) or '-':<20} {gate:<7} "
            f"{v['suite_version'] or '-':<18} {v['dataset_version'] or '-':<16} "
            f"{_scores(v['metrics'])}"
        )
        lines.append(f"{'':>6}{_versus(v['metrics'], v.get('compared_with'))}")
        lines.append(
            f"{'':>6}base={v['base_model']}@{lineage[tags.BASE_REVISION]} "
            f"config={lineage[tags.CONFIG_HASH]} git={(lineage[tags.GIT_SHA] or '')[:12]} "
            f"run={lineage[tags.MLFLOW_RUN_ID]} "
            f"dag={lineage[tags.DAG_ID]}/{lineage[tags.DAG_RUN_ID]}"
        )
    lines += ["", "ledger:"]
    for e in state["ledger"]:
        lines.append(
            f"  #{e['seq']:<3} {e['at']} {e['actor']:<12} {e['action']:<8} "
            f"v{e['version']} {e['from_stage'] or '-'} -> {e['to_stage'] or '-'} "
            f"(was v{e['from_version'] or '-'}) dag_run={e['dag_run_id'] or '-'} "
            f"{e['reason']}"
        )
    return "\n".join(lines)
