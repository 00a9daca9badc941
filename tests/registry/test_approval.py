"""Human approval is enforced by the library on every path that moves production, cannot be
switched off per model, and identities come from the OS or Airflow, never from free text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from modelyard.cli import main
from modelyard.evaluation.gate import resolve_gate
from modelyard.registry import approve, promote, rollback, status
from modelyard.registry.artifacts import client_for
from modelyard.registry.identity import airflow_actor, hitl_responder, os_user
from modelyard.registry.tags import GATE
from modelyard.settings import get_settings
from tests.registry.stores import staged_version

MODELYARD = str(Path(sys.executable).parent / "modelyard")


@pytest.fixture
def approval_on(settings, monkeypatch):
    """Settings (and the CLI's environment) with promotion.require_human_approval on."""
    monkeypatch.setenv("MODELYARD_PROMOTION__REQUIRE_HUMAN_APPROVAL", "true")
    get_settings.cache_clear()
    return get_settings()


def _canary(settings) -> str:
    version = staged_version(settings)
    promote(settings, "canary", actor="alice", reason="smoke tests green")
    return version


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # only this command's output
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_production_needs_another_persons_approval_of_that_version(approval_on, capsys) -> None:
    settings = approval_on
    version = _canary(settings)
    me = os_user()

    code, _, err = _cli(capsys, "promote", "--to", "production")
    assert code == 2 and err.count("\n") == 1
    assert f"version {version} of" in err and "has no approval" in err
    assert f"modelyard approve --version {version}" in err

    # An approval by the person who then promotes is recorded, but is no approval (four-eyes).
    assert _cli(capsys, "approve", "--version", version, "--reason", "canary green")[0] == 0
    code, _, err = _cli(capsys, "promote", "--to", "production")
    assert code == 2 and f"approved only by {me}, who is promoting it" in err
    assert "canary" in status(settings)["aliases"]

    approve(settings, actor="bob", reason="checked the canary dashboards", version=version)
    code, out, _ = _cli(capsys, "promote", "--to", "production", "--reason", "ship")
    assert code == 0 and json.loads(out)["version"] == version

    state = status(settings)
    assert state["aliases"] == {"production": version}
    approvals = [e for e in state["ledger"] if e["action"] == "approve"]
    assert [(a["actor"], a["version"]) for a in approvals] == [(me, version), ("bob", version)]
    assert all(a["at"] and a["host"] for a in approvals)  # who, which version, when, where
    shipped = state["ledger"][-1]
    assert (shipped["action"], shipped["actor"], shipped["approved_by"]) == (
        "promote",
        me,
        ["bob"],
    )
    assert shipped["approvals"] == [approvals[1]["id"]]


def test_an_approval_is_for_one_version_and_rollback_needs_none(approval_on) -> None:
    settings = approval_on
    v1 = _canary(settings)
    with pytest.raises(ValueError, match="does not hold canary"):
        approve(settings, actor="bob", reason="too early", version=int(v1) + 1)
    approve(settings, actor="bob", reason="ok", version=v1)
    promote(settings, "production", actor="alice", reason="first")

    v2 = _canary(settings)
    with pytest.raises(PermissionError, match=f"version {v2} of .* has no approval"):
        promote(settings, "production", actor="alice", reason="bob approved v1, not v2")
    approve(settings, actor="bob", reason="ok", version=v2)
    promote(settings, "production", actor="alice", reason="second")

    # Back to a version that already held production: no new approval, recorded with its actor.
    rolled = rollback(settings, actor="carol", reason="error rate up")
    assert rolled["version"] == v1
    assert status(settings)["ledger"][-1]["actor"] == "carol"


def test_no_per_model_override_can_turn_approval_off(approval_on, capsys, monkeypatch) -> None:
    settings = approval_on
    version = _canary(settings)
    override = json.dumps({"require_human_approval": False})
    client_for(settings).set_registered_model_tag(settings.registered_model, GATE, override)

    with pytest.raises(ValueError, match=r"modelyard\.gate: .*promotion\.require_human_approval"):
        resolve_gate(settings.gate, override)
    with pytest.raises(PermissionError, match="has no approval"):
        promote(settings, "production", actor="alice", reason="the tag says no approval")
    assert status(settings)["aliases"]["canary"] == version

    # The old gate setting is refused in one line that names where approval lives now.
    monkeypatch.setenv("MODELYARD_GATE__REQUIRE_HUMAN_APPROVAL", "false")
    get_settings.cache_clear()
    code, _, err = _cli(capsys, "registry", "status")
    assert code == 2 and err.count("\n") == 1
    assert "gate" in err and "promotion.require_human_approval" in err


def test_the_cli_records_the_os_account_and_names_others_apart(settings) -> None:
    staged_version(settings)
    spoofed = {**os.environ, "USER": "mallory", "LOGNAME": "mallory", "USERNAME": "mallory"}
    done = subprocess.run(
        [MODELYARD, "promote", "--to", "canary", "--on-behalf-of", "carol"],
        env=spoofed,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    entry = status(settings)["ledger"][-1]
    assert (entry["actor"], entry["on_behalf_of"]) == (os_user(), "carol")
    assert entry["actor"] != "mallory"

    free_text = subprocess.run(
        [MODELYARD, "rollback", "--actor", "someone-else"], capture_output=True, text=True
    )
    assert free_text.returncode == 2 and "unrecognized arguments: --actor" in free_text.stderr


def test_airflow_identities() -> None:
    """The person who triggered the run; ``airflow:<dag_id>`` only when no person did."""
    run = SimpleNamespace(dag_id="promote_model", triggering_user_name="dana")
    assert airflow_actor({"dag_run": run}) == "dana"
    scheduled = SimpleNamespace(dag_id="canary_analysis", triggering_user_name=None)
    assert airflow_actor({"dag_run": scheduled}) == "airflow:canary_analysis"
    assert hitl_responder({"responded_by_user": {"id": "7", "name": "erin"}}) == "erin"
    assert hitl_responder({"responded_by_user": None, "timedout": True}) is None
