"""Two promotions started at once, in two processes: exactly one production version results."""

from __future__ import annotations

from pathlib import Path

from evaluation.helpers import publish_dataset, train_result

from modelyard.registry import promote, register_candidate, rollback, status
from modelyard.settings import Settings
from tests.registry.concurrently import at_once
from tests.registry.stores import staged_version


def _promote_worker(home: str, base: str, actor: str, barrier, results) -> None:
    settings = Settings(home=Path(home), base_model=base)
    barrier.wait()
    try:
        out = promote(settings, "production", actor=actor, reason="race")
        results.put(("ok", out["version"]))
    except ValueError as exc:
        results.put(("refused", str(exc)))


def test_concurrent_promotions_leave_one_production(
    settings, tiny_model, good_adapter, eval_sample
) -> None:
    manifest = publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    # The gate is not under test here: a passed report as evaluate_candidate returns it.
    report = {
        "suite_version": "suite-race",
        "candidate": {"metrics": {"rouge_l": 0.5}},
        "gate": {"passed": True, "failed": []},
        "artifacts": {},
    }
    registered = register_candidate(
        train_result(settings, good_adapter, tiny_model, "race"),
        report,
        manifest,
        {"dag_id": "t", "run_id": "r"},
        settings,
    )
    promote(settings, "canary", actor="setup", reason="race setup")

    args = [(str(settings.home), str(tiny_model), f"promoter-{i}") for i in range(2)]
    outcomes = sorted(at_once(_promote_worker, args, timeout=120))

    assert [o[0] for o in outcomes] == ["ok", "refused"]
    assert outcomes[0][1] == registered["version"]
    assert "no version of" in outcomes[1][1] and "holds canary" in outcomes[1][1]
    state = status(settings)
    assert state["aliases"] == {"production": registered["version"]}
    production_moves = [e for e in state["ledger"] if e["to_stage"] == "production"]
    assert len(production_moves) == 1
    assert [e["seq"] for e in state["ledger"]] == list(range(1, len(state["ledger"]) + 1))


def _rollback_worker(home: str, base: str, bad: str, barrier, results) -> None:
    settings = Settings(home=Path(home), base_model=base)
    barrier.wait()
    try:
        out = rollback(settings, actor="oncall", reason="incident", from_version=bad)
        results.put(("ok", out["version"]))
    except ValueError as exc:
        results.put(("refused", str(exc)))


def test_two_rollbacks_of_one_incident_go_back_one_version(settings, tiny_model) -> None:
    """Two people roll back the same bad production at once: one moves it back one version,
    the other finds it moved and changes nothing (production must not fall back twice). Each
    names what it rolls back; without that a call rolls back what production holds when made."""
    versions = []
    for _ in range(3):
        versions.append(staged_version(settings))
        promote(settings, "canary", actor="setup", reason="setup")
        promote(settings, "production", actor="setup", reason="setup")

    args = [(str(settings.home), str(tiny_model), versions[2])] * 2  # both saw it in production
    outcomes = sorted(at_once(_rollback_worker, args, timeout=120))

    assert outcomes[0] == ("ok", versions[1])
    assert outcomes[1][0] == "refused" and "it moved while this rollback waited" in outcomes[1][1]
    state = status(settings)
    assert state["aliases"]["production"] == versions[1]
    assert [e["action"] for e in state["ledger"]].count("rollback") == 1
