"""Decisions on a real MLflow registry: a failed canary is rolled back for good, a passing one
waits for data and its bake time, then needs the human approval when settings ask for it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from logs import write_arm, writer
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from serving.harness import register

from modelyard.canary.decision import ACTOR, format_report, run_canary_analysis
from modelyard.registry import approve, promote, status
from modelyard.registry.tags import CANARY_ANALYSIS, CANARY_VERDICT
from modelyard.registry_page import Links, Viewer, render_registry
from modelyard.serving.requestlog import log_url
from modelyard.settings import PromotionSettings


def _production_and_canary(settings, adapter: Path) -> tuple[str, str]:
    """v1 in production and v2 in canary, moved the way promote_model moves them."""
    v1 = register(settings, adapter, "prod")
    promote(settings, to="canary", actor="tests", reason="setup")
    promote(settings, to="production", actor="tests", reason="setup")
    v2 = register(settings, adapter, "candidate")
    promote(settings, to="canary", actor="tests", reason="setup")
    return v1, v2


def _analyses(settings, version: str) -> list[str]:
    client = MlflowClient(settings.tracking_uri)
    run_id = client.get_model_version(settings.registered_model, version).run_id
    return [f.path for f in client.list_artifacts(run_id, "canary")]


@pytest.mark.usefixtures("mlflow_store")
def test_a_failing_canary_is_rolled_back_recorded_and_never_promoted_again(
    settings, good_adapter
) -> None:
    v1, v2 = _production_and_canary(settings, good_adapter)
    log = writer(log_url(settings))
    write_arm(log, alias="canary", version=v2, n=80, error_rate=0.2, valid_rate=0.4)
    write_arm(log, alias="production", version=v1, n=300, error_rate=0.0, valid_rate=0.95)
    log.close()

    report = run_canary_analysis(settings, dag_id="canary_analysis", dag_run_id="r1")
    assert report["outcome"] == "rolled_back", format_report(report)
    assert "error_rate failed" in report["reason"]
    verdicts = {m["name"]: m["verdict"] for m in report["metrics"]}
    assert verdicts["error_rate"] == verdicts["format_validity"] == "fail"
    assert verdicts["thumbs_up"] == "not_enough_data"  # nobody rated anything
    assert "ROLLED_BACK" in format_report(report)

    state = status(settings)
    assert state["aliases"] == {"production": v1}  # canary gone, production untouched
    last = state["ledger"][-1]
    assert (last["action"], last["version"], last["from_stage"], last["to_stage"]) == (
        "rollback",
        v2,
        "canary",
        None,
    )
    assert last["actor"] == ACTOR and last["dag_run_id"] == "r1"
    assert last["report"] == report["report"]
    client = MlflowClient(settings.tracking_uri)
    tags = client.get_model_version(settings.registered_model, v2).tags
    assert tags[CANARY_VERDICT] == "failed"
    assert json.loads(tags[CANARY_ANALYSIS])["outcome"] == "rolled_back"
    stored = json.loads(Path(download_artifacts(report["report"])).read_text())
    assert stored["outcome"] == "rolled_back" and stored["arms"]["canary"]["requests"] == 80
    assert Path(download_artifacts(report["chart"])).read_bytes()[:4] == b"\x89PNG"

    # Never again without a new gate: not by hand, not even after an alias is set in MLflow.
    client.set_registered_model_alias(settings.registered_model, "canary", v2)
    with pytest.raises(PermissionError, match="failed its canary analysis"):
        promote(settings, to="production", actor="someone", reason="retry", version=v2)
    client.set_registered_model_alias(settings.registered_model, "staging", v2)
    with pytest.raises(PermissionError, match="register a new version"):
        promote(settings, to="canary", actor="someone", reason="retry", version=v2)
    assert status(settings)["aliases"]["production"] == v1

    # The registry page shows the analysis under the version: outcome, metrics, p-values.
    html = render_registry(status(settings), Viewer(name="alice", can_act=False), Links())
    section = html[html.index(f'id="version-{v2}"') :]
    section = section[: section.index("</section>")]
    assert "failed canary: never promoted again" in section and "rolled_back" in section
    rows = re.findall(r'<tr class="(\w+)"><td>([a-z_]+)( \(critical\))?</td>', section)
    assert {(verdict, metric) for verdict, metric, _ in rows} >= {
        ("fail", "error_rate"),
        ("fail", "format_validity"),
        ("not_enough_data", "thumbs_up"),
    }
    assert report["report"] in section
    assert "canary-analysis" not in html[html.index(f'id="version-{v1}"') :]


@pytest.mark.usefixtures("mlflow_store")
def test_a_good_canary_waits_for_data_and_bake_time_then_for_a_person(
    settings, good_adapter
) -> None:
    v1, v2 = _production_and_canary(settings, good_adapter)
    settings = settings.model_copy(
        update={"promotion": PromotionSettings(require_human_approval=True)}
    )

    empty = run_canary_analysis(settings)
    assert empty["outcome"] == "waiting" and "not enough data" in empty["reason"]
    assert {m["verdict"] for m in empty["metrics"]} == {"not_enough_data"}

    log = writer(log_url(settings))
    same = dict(n=200, error_rate=0.01, valid_rate=0.9, thumbs_up_rate=0.8)
    write_arm(log, alias="canary", version=v2, **same)
    write_arm(log, alias="production", version=v1, seed=1, **same)
    log.close()
    since = empty["since"]
    baking = run_canary_analysis(settings)
    assert baking["outcome"] == "waiting" and "baking" in baking["reason"]
    assert baking["since"] == since  # the window starts where the ledger says, every time
    assert {m["verdict"] for m in baking["metrics"] if m["critical"]} == {"pass"}

    later = datetime.fromisoformat(since) + timedelta(minutes=settings.canary.bake_minutes + 1)
    held = run_canary_analysis(settings, now=later)
    assert held["outcome"] == "awaiting_approval" and "approve" in held["reason"]
    assert status(settings)["aliases"] == {"production": v1, "canary": v2}  # nothing moved

    approve(settings, actor="alice", reason="canary figures look fine")
    done = run_canary_analysis(settings, now=later, dag_id="canary_analysis", dag_run_id="r9")
    assert done["outcome"] == "promoted", format_report(done)
    state = status(settings)
    assert state["aliases"] == {"production": v2}
    last = state["ledger"][-1]
    assert (last["action"], last["to_stage"], last["actor"]) == ("promote", "production", ACTOR)
    assert last["approved_by"] == ["alice"] and last["from_version"] == v1
    assert len(_analyses(settings, v2)) == 4  # every analysis recorded, the waits too
    assert run_canary_analysis(settings)["outcome"] == "no_canary"


@pytest.mark.usefixtures("mlflow_store")
def test_auto_canary_moves_only_gate_passed_versions_when_on(settings, good_adapter) -> None:
    from modelyard.canary.auto import ACTOR as AUTO
    from modelyard.canary.auto import auto_canary

    v1 = register(settings, good_adapter, "first")
    off = settings.model_copy(update={"promotion": PromotionSettings(auto_canary=False)})
    skipped = auto_canary(off, [{"version": v1, "staging": True}])[0]["skipped"]
    assert "auto_canary is off" in skipped
    assert status(settings)["aliases"] == {"staging": v1}
    refused = auto_canary(settings, [{"version": v1, "staging": False}])
    assert refused[0]["skipped"].startswith("the gate refused it")
    # Anyone with trigger rights can post an event: one naming no existing version fails the
    # run before anything moves (it used to promote whichever version held staging).
    good = {"version": v1, "staging": True}
    for bad in (
        {"staging": True},
        {"verison": v1, "staging": True},
        {"version": 0},
        {"version": True},
    ):
        with pytest.raises(ValueError, match="names no model version"):
            auto_canary(settings, [good, bad])
    with pytest.raises(ValueError, match="names version 999, which .* does not have"):
        auto_canary(settings, [good, {"version": "999", "staging": True}])
    assert status(settings)["aliases"] == {"staging": v1}
    moved = auto_canary(settings, [{"version": v1, "staging": True}], "auto_canary", "r2")
    # The first version: no live incumbent to compare a canary with, so on to production.
    assert moved[0]["stage"] == "production"
    assert status(settings)["aliases"] == {"production": v1}
    ledger = status(settings)["ledger"]
    assert [(e["to_stage"], e["actor"]) for e in ledger] == [
        ("staging", ledger[0]["actor"]),
        ("canary", AUTO),
        ("production", AUTO),
    ]
    assert "first production" in ledger[-1]["reason"]
    again = auto_canary(settings, [{"version": v1, "staging": True}])  # replayed event
    assert "does not hold staging" in again[0]["skipped"]
    v2 = register(settings, good_adapter, "second")
    assert auto_canary(settings, [{"version": v2, "staging": True}])[0]["stage"] == "canary"
    assert status(settings)["aliases"] == {"production": v1, "canary": v2}


def test_before_the_first_model_there_is_nothing_to_watch(settings) -> None:
    """A schedule that starts before anything is registered: no store, then no model."""
    assert "not registered yet" in run_canary_analysis(settings)["reason"]
    from modelyard.registry.artifacts import client_for

    client_for(settings).search_registered_models()  # the store exists, the model does not
    outcome = run_canary_analysis(settings)
    assert (outcome["outcome"], outcome["reason"]) == (
        "no_canary",
        f"{settings.registered_model} is not registered yet",
    )
