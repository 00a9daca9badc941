"""The offline gate: pure decisions over two score dicts and a contamination report.

Modelled on MLflow's former ``validation_thresholds`` (``MetricThreshold``: threshold,
min_absolute_change, min_relative_change, greater_is_better), plus two contamination checks.
Every check is returned with its value, its bar and its margin (positive = passed with room),
so a refusal names exactly which thresholds failed and by how much. Nothing configured means
nothing is approved: a gate that checks nothing would wave every candidate through.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from modelyard.settings import GateSettings, MetricThreshold, one_line

GATE_TAG = "modelyard.gate"  # registered-model tag holding a JSON override of GateSettings
_EPS = 1e-12


def resolve_gate(defaults: GateSettings, override_json: str | None) -> GateSettings:
    """Settings' gate with the registered model's ``modelyard.gate`` JSON merged on top.

    The override may only name gate fields: an unknown key, a bad value or an attempt to turn
    off human approval (a registry-wide promotion setting) is refused in one line.
    """
    if not override_json:
        return defaults
    try:
        override = json.loads(override_json)
    except ValueError as exc:
        raise ValueError(f"registered-model tag {GATE_TAG} is not JSON: {exc}") from None
    if not isinstance(override, dict):
        raise ValueError(f"registered-model tag {GATE_TAG} must be a JSON object of gate fields")
    try:
        return GateSettings.model_validate({**defaults.model_dump(), **override})
    except ValidationError as err:
        raise ValueError(one_line(err, f"registered-model tag {GATE_TAG}")) from None


def _check(
    name: str,
    metric: str | None,
    value: float | None,
    required: float | None,
    margin: float | None,
    passed: bool,
    detail: str = "",
) -> dict[str, Any]:
    return {
        "name": name,
        "metric": metric,
        "value": value,
        "required": required,
        "margin": margin,
        "passed": passed,
        "detail": detail,
    }


def metric_checks(
    metric: str, bar: MetricThreshold, candidate: dict[str, float], incumbent: dict[str, float]
) -> list[dict[str, Any]]:
    """The value and change checks one metric's bar asks for."""
    sign = 1.0 if bar.greater_is_better else -1.0
    value, base = candidate.get(metric), incumbent.get(metric)
    checks = []
    if bar.threshold is not None:
        if value is None:
            checks.append(
                _check(
                    f"{metric}.threshold",
                    metric,
                    None,
                    bar.threshold,
                    None,
                    False,
                    "metric missing from the candidate's scores",
                )
            )
        else:
            margin = sign * (value - bar.threshold)
            checks.append(
                _check(f"{metric}.threshold", metric, value, bar.threshold, margin, margin >= 0)
            )
    for kind, required in (
        ("min_absolute_change", bar.min_absolute_change),
        ("min_relative_change", bar.min_relative_change),
    ):
        if required is None:
            continue
        if value is None or base is None:
            checks.append(
                _check(
                    f"{metric}.{kind}",
                    metric,
                    None,
                    required,
                    None,
                    False,
                    "metric missing from the candidate's or incumbent's scores",
                )
            )
            continue
        change = sign * (value - base)
        if kind == "min_relative_change":
            change /= max(abs(base), _EPS)
        margin = change - required
        checks.append(
            _check(
                f"{metric}.{kind}",
                metric,
                change,
                required,
                margin,
                margin >= 0,
                f"candidate {value:.4g} vs incumbent {base:.4g}",
            )
        )
    return checks


def contamination_checks(manifest_leaks: int | None, overlap_ids: list[str]) -> list[dict]:
    """Curation's own count of leaks into train, and this stage's independent re-check."""
    return [
        _check(
            "contamination.manifest",
            None,
            manifest_leaks,
            0,
            None if manifest_leaks is None else -manifest_leaks,
            manifest_leaks == 0,
            "dataset manifest has no leaked-to-train count"
            if manifest_leaks is None
            else "suite records reaching train per the dataset manifest",
        ),
        _check(
            "contamination.overlap",
            None,
            len(overlap_ids),
            0,
            -len(overlap_ids),
            not overlap_ids,
            "suite records overlapping the training file: "
            + (", ".join(overlap_ids[:10]) or "none"),
        ),
    ]


def decide(
    gate: GateSettings,
    candidate: dict[str, float],
    incumbent: dict[str, float],
    manifest_leaks: int | None,
    overlap_ids: list[str],
) -> dict[str, Any]:
    """Every check of the gate, and ``passed`` only when there were bars and all were met."""
    checks: list[dict[str, Any]] = []
    if not gate.thresholds:
        checks.append(
            _check(
                "gate.configured",
                None,
                None,
                None,
                None,
                False,
                "no thresholds configured: nothing is approved",
            )
        )
    primary = gate.thresholds.get(gate.primary_metric)
    if gate.thresholds and (
        primary is None
        or (primary.min_absolute_change is None and primary.min_relative_change is None)
    ):
        checks.append(
            _check(
                "gate.primary_change",
                gate.primary_metric,
                None,
                None,
                None,
                False,
                f"no change threshold on the primary metric {gate.primary_metric}: "
                "the candidate is never compared with the incumbent",
            )
        )
    for metric, bar in gate.thresholds.items():
        checks += metric_checks(metric, bar, candidate, incumbent)
    checks += contamination_checks(manifest_leaks, overlap_ids)
    failed = [c["name"] for c in checks if not c["passed"]]
    return {
        "passed": not failed,
        "failed": failed,
        "checks": checks,
        "primary_metric": gate.primary_metric,
        "config": gate.model_dump(),
    }
