"""What a canary analysis decides and does: promote, roll back, or wait, and always record it.

- A critical metric fails (significantly and beyond its tolerance) -> roll back at once,
  whatever the bake time: a canary that hurts users must not keep hurting them.
- Every critical metric passes and the bake time has passed -> promote to production through
  :func:`modelyard.registry.stages.promote` (lock, ledger, and the human approval when
  ``promotion.require_human_approval`` asks for one: without a standing approval by a person
  the outcome is ``awaiting_approval`` and nothing moves; the next run promotes once approved).
- Otherwise wait; past ``max_bake_minutes`` with critical metrics still short of data,
  ``canary.on_timeout`` decides.

Every analysis (also a wait) is recorded: report JSON and chart on the version's MLflow run and
a summary tag on the version (:mod:`modelyard.canary.report`); every move is a ledger entry.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from modelyard.canary.analysis import FAIL, NOT_ENOUGH, MetricResult, arm_summary, compare
from modelyard.settings import CanarySettings, Settings

ACTOR = "airflow:canary_analysis"


def decide(
    results: list[MetricResult], elapsed_minutes: float, cfg: CanarySettings
) -> tuple[str, str]:
    """``("promote" | "rollback" | "wait", why)`` from the metric verdicts and the canary's age."""
    critical = [m for m in results if m.critical]
    failed = [m for m in critical if m.verdict == FAIL]
    if failed:
        return "rollback", "; ".join(f"{m.name} failed: {m.detail}" for m in failed)
    if not critical:
        return "wait", "no critical metric is configured: nothing can promote this canary"
    short = [m.name for m in critical if m.verdict == NOT_ENOUGH]
    if not short:
        if elapsed_minutes >= cfg.bake_minutes:
            return "promote", f"all critical metrics pass after {elapsed_minutes:.1f} min"
        return "wait", (
            f"all critical metrics pass; baking {elapsed_minutes:.1f} of {cfg.bake_minutes:g} min"
        )
    if elapsed_minutes >= cfg.max_bake_minutes:
        why = (
            f"not enough data for {', '.join(short)} after {elapsed_minutes:.1f} min "
            f"(max {cfg.max_bake_minutes:g}): canary.on_timeout={cfg.on_timeout}"
        )
        return cfg.on_timeout, why
    return "wait", f"not enough data yet for {', '.join(short)}"


def window_start(client, name: str, version: str, ledger: list[dict[str, Any]]) -> datetime:
    """When ``version`` last entered canary: its ledger entry, else a tag set on first sight.

    An alias set outside modelyard (by hand in MLflow) has no ledger entry; its window then
    starts at the first analysis that sees it, recorded on the version so it stays put.
    """
    from modelyard.registry import tags

    entries = [
        e
        for e in ledger
        if e.get("action") == "promote"
        and e.get("to_stage") == "canary"
        and e["version"] == version
    ]
    if entries and entries[-1].get("at"):
        return datetime.fromisoformat(entries[-1]["at"])
    mv = client.get_model_version(name, version)
    if since := mv.tags.get(tags.CANARY_SINCE):
        return datetime.fromisoformat(since)
    now = datetime.now(UTC)
    client.set_model_version_tag(name, version, tags.CANARY_SINCE, now.isoformat())
    return now


def _promote(settings: Settings, version: str, reason: str, dag: dict) -> tuple[str, str]:
    """Promote, or say why it waits for a person (approval) or why it could not."""
    from modelyard.registry.approval import approval_required, standing_approvals
    from modelyard.registry.artifacts import client_for
    from modelyard.registry.ledger import read_ledger
    from modelyard.registry.stages import promote

    if approval_required(settings):
        ledger = read_ledger(client_for(settings), settings.registered_model)
        if not any(e["actor"] != ACTOR for e in standing_approvals(ledger, version)):
            return "awaiting_approval", (
                f"{reason}; production needs a person's approval "
                f"(`modelyard approve --version {version}`): nothing moved"
            )
    try:
        promote(settings, to="production", actor=ACTOR, reason=reason, version=version, **dag)
    except PermissionError as exc:  # an approval was withdrawn or is the actor's own, or worse
        return ("awaiting_approval" if "approv" in str(exc) else "refused"), f"{reason}; {exc}"
    return "promoted", reason


def run_canary_analysis(
    settings: Settings,
    dag_id: str | None = None,
    dag_run_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Analyse the version holding ``canary``, act on the verdict, record it; the report."""
    from mlflow.exceptions import MlflowException

    from modelyard.canary import report as reports
    from modelyard.registry.artifacts import client_for
    from modelyard.registry.connection import StoreMissing, require_store
    from modelyard.registry.ledger import read_ledger
    from modelyard.registry.stages import rollback_canary
    from modelyard.serving.logreader import RequestLogReader

    cfg = settings.canary
    name = settings.registered_model
    try:
        require_store(settings)
        client = client_for(settings)
        model = client.get_registered_model(name)
    except (StoreMissing, MlflowException) as exc:
        if isinstance(exc, MlflowException) and exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        # A schedule that starts before the first model: nothing to watch yet, not a failure.
        return {"model": name, "outcome": "no_canary", "reason": f"{name} is not registered yet"}
    aliases = {a: str(v) for a, v in model.aliases.items()}
    canary = aliases.get("canary")
    if canary is None:
        return {"model": name, "outcome": "no_canary", "reason": "no version holds canary"}
    production = aliases.get("production")
    until = now or datetime.now(UTC)
    since = window_start(client, name, canary, read_ledger(client, name))
    elapsed = max(0.0, (until - since).total_seconds() / 60)
    reader = RequestLogReader.for_settings(settings)
    try:
        arm_c = reader.arm(alias="canary", version=canary, since=since, until=until)
        arm_p = reader.arm(alias="production", version=production, since=since, until=until)
    finally:
        reader.close()
    results = compare(arm_c, arm_p, cfg)
    if production is None:
        decision, reason = "wait", "no version holds production to compare with"
    elif production == canary:
        decision, reason = "wait", "canary and production are the same version"
    else:
        decision, reason = decide(results, elapsed, cfg)
    report: dict[str, Any] = {
        "model": name,
        "id": uuid.uuid4().hex[:8],
        "at": until.isoformat(timespec="milliseconds"),
        "canary_version": canary,
        "production_version": production,
        "since": since.isoformat(timespec="milliseconds"),
        "elapsed_minutes": round(elapsed, 3),
        "settings": cfg.model_dump(),
        "arms": {"canary": arm_summary(arm_c), "production": arm_summary(arm_p)},
        "metrics": [m.as_dict() for m in results],
        "decision": decision,
        "reason": reason,
        "dag_id": dag_id,
        "dag_run_id": dag_run_id,
    }
    report["report"] = reports.report_uri(client, name, report)
    dag = {"dag_id": dag_id, "dag_run_id": dag_run_id}
    outcome = "waiting"
    if decision == "promote":
        outcome, report["reason"] = _promote(settings, canary, reason, dag)
    elif decision == "rollback":
        try:
            rollback_canary(
                settings, canary, ACTOR, reason[:1900], report_uri=report["report"], **dag
            )
            outcome = "rolled_back"
        except ValueError as exc:  # moved by someone since it was read: theirs stands
            outcome, report["reason"] = "skipped", str(exc)
    report["outcome"] = outcome
    report.update(reports.record(client, name, report))
    return report


def format_report(report: dict[str, Any]) -> str:
    """A few lines for logs and the demo: the outcome, then one line per metric."""
    if report.get("outcome") == "no_canary":
        return f"canary analysis of {report['model']}: {report['reason']}"
    lines = [
        f"canary v{report['canary_version']} vs production v{report['production_version']} "
        f"over {report['elapsed_minutes']:.1f} min: {report['outcome'].upper()} "
        f"({report['reason']})"
    ]
    for m in report["metrics"]:

        def show(v: float | None, name: str = m["name"]) -> str:
            if v is None:
                return "-"
            return f"{v:.1f} ms" if name == "latency" else f"{v:.3f}"

        p = "-" if m["p_value"] is None else f"{m['p_value']:.3g}"
        flag = " (critical)" if m["critical"] else ""
        lines.append(
            f"  {m['name']:<16}{flag:<11} canary {show(m['canary']):>9}  production "
            f"{show(m['production']):>9}  n={m['samples'][0]}/{m['samples'][1]}  p={p:<8} "
            f"{m['verdict'].upper()}"
        )
    lines.append(f"  report: {report.get('report')}")
    return "\n".join(lines)
