"""Everything the registry knows about the registered model: a JSON-able dict and a table."""

from __future__ import annotations

import json
import math
from typing import Any

from mlflow.exceptions import MlflowException

from modelyard.registry import tags
from modelyard.registry.artifacts import client_for
from modelyard.registry.connection import reports_store_errors, require_store
from modelyard.registry.ledger import read_ledger
from modelyard.settings import Settings

LINEAGE = (
    tags.DATASET_VERSION,
    tags.DATASET_HASH,
    tags.SNAPSHOT,
    tags.SNAPSHOT_VERSIONS,
    tags.BASE_MODEL,
    tags.BASE_REVISION,
    tags.CONFIG_HASH,
    tags.GIT_SHA,
    tags.DAG_ID,
    tags.DAG_RUN_ID,
    tags.MLFLOW_RUN_ID,
    tags.GATE_REPORT,
)


def _json(t: dict[str, str], key: str, notes: list[str]) -> Any:
    """A JSON tag's value; a tag that is not JSON is noted and read as absent."""
    raw = t.get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        notes.append(f"unreadable tag {key}: {exc}")
        return None


def _numbers(value: Any, key: str, notes: list[str], allow_none: bool = False) -> dict[str, Any]:
    """``{name: number}`` from a tag's value; anything else in it is noted and left out."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        notes.append(f"unreadable tag {key}: not a JSON object")
        return {}
    numbers = {}
    for name, number in value.items():
        finite = isinstance(number, int | float) and math.isfinite(number)
        if (finite and not isinstance(number, bool)) or (number is None and allow_none):
            numbers[name] = number
        else:
            notes.append(f"unreadable tag {key}: {name} is not a number ({number!r})")
    return numbers


def _incumbent(t: dict[str, str], notes: list[str]) -> dict[str, Any]:
    """What the version was gated against: ``{label, version, metrics}``, as far as readable."""
    value = _json(t, tags.GATE_INCUMBENT, notes)
    if value is None:
        return {}
    if not isinstance(value, dict):
        notes.append(f"unreadable tag {tags.GATE_INCUMBENT}: not a JSON object")
        return {}
    return {
        "label": value.get("label") if isinstance(value.get("label"), str) else None,
        "version": None if value.get("version") is None else str(value["version"]),
        "metrics": _numbers(value.get("metrics"), tags.GATE_INCUMBENT, notes),
    }


def _version_row(mv, aliases: list[str]) -> dict[str, Any]:
    """One version for the table, JSON and the registry page. A hand-edited or corrupt tag
    costs only what it held: the rest is shown, with a note naming the tag."""
    t = mv.tags
    notes: list[str] = []
    return {
        "version": str(mv.version),
        "aliases": sorted(aliases),
        "created_at": mv.creation_timestamp,
        "run_id": mv.run_id,
        "source": mv.source,
        "dataset_version": t.get(tags.DATASET_VERSION),
        "base_model": t.get(tags.BASE_MODEL),
        "suite_version": t.get(tags.SUITE_VERSION),
        "metrics": _numbers(_json(t, tags.METRICS, notes), tags.METRICS, notes),
        "scores_by_suite": {
            k.removeprefix(tags.SCORES_PREFIX): _numbers(_json(t, k, notes), k, notes)
            for k in sorted(t)
            if k.startswith(tags.SCORES_PREFIX)
        },
        "gate_decision": t.get(tags.GATE_DECISION),
        "gate_failed": t.get(tags.GATE_FAILED) or "",
        "gate_margins": _numbers(
            _json(t, tags.GATE_MARGINS, notes), tags.GATE_MARGINS, notes, allow_none=True
        ),
        "compared_with": _incumbent(t, notes),
        "rolled_back": t.get(tags.ROLLED_BACK) == "true",
        "canary_verdict": t.get(tags.CANARY_VERDICT),
        "canary_analysis": _json(t, tags.CANARY_ANALYSIS, notes),
        "lineage": {k: t.get(k) for k in LINEAGE},
        "notes": notes,
    }


def unregistered(name: str, problem: str | None = None) -> dict[str, Any]:
    """The status of a model with no versions; ``problem`` says why (e.g. no store there)."""
    return {
        "model": name,
        "exists": False,
        "problem": problem,
        "aliases": {},
        "previous_production": None,
        "gate_override": None,
        "versions": [],
        "ledger": [],
    }


@reports_store_errors
def status(settings: Settings) -> dict[str, Any]:
    """Aliases, every version with lineage, scores and gate decision, and the ledger.

    Read-only: a store that does not exist is a :class:`StoreMissing` error, never created.
    """
    name = settings.registered_model
    require_store(settings)
    client = client_for(settings)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return unregistered(name)
    aliases = {alias: str(version) for alias, version in model.aliases.items()}
    found = client.search_model_versions(f"name = '{name}'")
    versions = [
        _version_row(mv, [a for a, v in aliases.items() if v == str(mv.version)])
        for mv in sorted(found, key=lambda v: int(v.version))
    ]
    ledger = read_ledger(client, name)
    return {
        "model": name,
        "exists": True,
        "aliases": aliases,
        "previous_production": model.tags.get(tags.PREVIOUS_PRODUCTION),
        "gate_override": model.tags.get(tags.GATE),
        "versions": versions,
        "ledger": ledger,
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


def _s(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def format_status(state: dict[str, Any]) -> str:
    """The status dict as a table a person reads at a terminal."""
    if not state["exists"]:
        return f"{state['model']}: not registered yet"
    lines = [
        f"registered model: {state['model']}",
        "aliases: "
        + (", ".join(f"{a}=v{v}" for a, v in sorted(state["aliases"].items())) or "none"),
        f"previous production: {_s(state['previous_production'])}",
        "",
        f"{'ver':>4}  {'aliases':<20} {'gate':<7} {'suite':<18} {'dataset':<16} scores",
    ]
    for v in state["versions"]:
        lineage = v["lineage"]
        gate = _s(v["gate_decision"])
        if v["gate_failed"]:
            gate += f" ({v['gate_failed']})"
        lines.append(
            f"{v['version']:>4}  {','.join(v['aliases']) or '-':<20} {gate:<7} "
            f"{_s(v['suite_version']):<18} {_s(v['dataset_version']):<16} "
            f"{_scores(v['metrics'])}"
        )
        lines.append(f"{'':>6}{_versus(v['metrics'], v.get('compared_with'))}")
        lines.append(
            f"{'':>6}base={_s(v['base_model'])}@{_s(lineage[tags.BASE_REVISION])} "
            f"config={_s(lineage[tags.CONFIG_HASH])} git={_s(lineage[tags.GIT_SHA])[:12]} "
            f"run={_s(lineage[tags.MLFLOW_RUN_ID])} "
            f"dag={_s(lineage[tags.DAG_ID])}/{_s(lineage[tags.DAG_RUN_ID])}"
        )
        lines += [f"{'':>6}note: {note}" for note in v["notes"]]
    lines += ["", "ledger:"]
    for e in state["ledger"]:
        who = _s(e["actor"]) + (f" for {e['on_behalf_of']}" if e["on_behalf_of"] else "")
        lines.append(
            f"  #{e['seq']:<3} {_s(e['at'])} {who:<12} {_s(e['action']):<8} "
            f"v{_s(e['version'])} {_s(e['from_stage'])} -> {_s(e['to_stage'])} "
            f"(was v{_s(e['from_version'])}) dag_run={_s(e['dag_run_id'])} {_s(e['reason'])}"
        )
        lines += [f"{'':>7}note: {note}" for note in e["notes"]]
    return "\n".join(lines)
