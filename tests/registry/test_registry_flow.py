"""The registry end to end on a real MLflow sqlite store: gate -> staging -> canary ->
production, refusal of failed versions, rollback, like-for-like re-scoring, lineage, CLI."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from evaluation.helpers import publish_dataset, train_result
from mlflow import MlflowClient

from modelyard.cli import registry as registry_cli
from modelyard.evaluation import evaluate_candidate
from modelyard.evaluation.suite import freeze_suite
from modelyard.registry import (
    approval_required,
    find_versions,
    load_model,
    promote,
    register_candidate,
    rollback,
    status,
)
from modelyard.registry.artifacts import load_causal_lm
from modelyard.registry.identity import os_user
from modelyard.registry.tags import GATE

# A newer candidate may trail the production version a little on this tiny task; the gate for
# this registered model says so through its own override tag (the per-model mechanism).
TOLERANT_GATE = {
    "thresholds": {
        "rouge_l": {"threshold": 0.3, "min_absolute_change": -0.2},
        "format_validity": {"threshold": 0.5},
    }
}


def _candidate(settings, tiny_model, adapter, manifest, name: str) -> tuple[dict, dict]:
    result = train_result(settings, adapter, tiny_model, name)
    return result, evaluate_candidate(result, settings, manifest)


def _register(settings, result, report, manifest, run_id: str) -> dict:
    ctx = {"dag_id": "finetune_model", "run_id": run_id, "actor": "airflow"}
    return register_candidate(result, report, manifest, ctx, settings)


def _generate(model, tok, record) -> list[int]:
    prompt = tok.apply_chat_template(
        record["messages"][:-1], add_generation_prompt=True, tokenize=False
    )
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model.generate(**enc, max_new_tokens=12, do_sample=False).tolist()[0]


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    registry_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_lifecycle(
    settings, tiny_model, weak_adapter, good_adapter, other_good_adapter, eval_sample, capsys
) -> None:
    manifest = publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    client = MlflowClient(settings.tracking_uri)
    name = settings.registered_model
    assert not approval_required(settings)

    # A weak candidate is registered for the record but can never hold an alias.
    weak = _register(
        settings,
        *_candidate(settings, tiny_model, weak_adapter, manifest, "weak"),
        manifest,
        "run-weak",
    )
    assert not weak["staging"]
    with pytest.raises(PermissionError, match=r"failed the gate.*rouge_l\.threshold"):
        promote(settings, "canary", actor="alice", reason="try", version=weak["version"])

    # A good one gets staging, then canary, then production, each step from the one below.
    result1, report1 = _candidate(settings, tiny_model, good_adapter, manifest, "good1")
    v1 = _register(settings, result1, report1, manifest, "run-1")
    assert v1["staging"] and status(settings)["aliases"] == {"staging": v1["version"]}
    assert _register(settings, result1, report1, manifest, "run-1")["version"] == v1["version"]
    with pytest.raises(ValueError, match="does not hold canary"):
        promote(settings, "production", actor="alice", reason="skip canary", version=v1["version"])
    promote(settings, "canary", actor="alice", reason="smoke tests green", dag_run_id="p-1")
    promote(settings, "production", actor="bob", reason="canary healthy", dag_run_id="p-2")
    assert status(settings)["aliases"] == {"production": v1["version"]}

    # The registered version loads back through MLflow and is exactly the trained adapter.
    record = eval_sample["eval"][0]
    expected = _generate(*load_causal_lm(str(tiny_model), None, str(good_adapter)), record)
    assert _generate(*load_model(settings, "production"), record) == expected

    # A second candidate is compared with production on the same suite (stored scores reused).
    client.set_registered_model_tag(name, GATE, json.dumps(TOLERANT_GATE))
    result2, report2 = _candidate(settings, tiny_model, other_good_adapter, manifest, "good2")
    assert report2["incumbent"] == {
        **report2["incumbent"],
        "kind": "production",
        "version": v1["version"],
        "rescored": False,
    }
    assert report2["incumbent"]["metrics"] == report1["candidate"]["metrics"]
    v2 = _register(settings, result2, report2, manifest, "run-2")
    promote(settings, "canary", actor="alice", reason="next")
    promote(settings, "production", actor="bob", reason="better", dag_run_id="p-4")
    state = status(settings)
    assert state["aliases"] == {"production": v2["version"]}
    assert state["previous_production"] == v1["version"]

    # Rollback restores the previous production version exactly, in one step.
    assert _cli("rollback", "--reason", "error rate up", "--on-behalf-of", "carol") == 0
    assert status(settings)["aliases"]["production"] == v1["version"]
    assert _generate(*load_model(settings, "production"), record) == expected
    with pytest.raises(ValueError, match="no earlier production version"):
        rollback(settings, actor="carol", reason="again")  # v2 was rolled back from: not good

    # A suite change re-scores the incumbent first, and stores that on the incumbent version.
    publish_dataset(settings.storage, "ds-b", [], eval_sample["later_eval"])
    new_suite = freeze_suite(settings, "add ds-b held-out records")
    _, report3 = _candidate(settings, tiny_model, good_adapter, manifest, "good3")
    assert report3["suite_version"] == new_suite.version != report1["suite_version"]
    assert report3["incumbent"]["rescored"] and report3["incumbent"]["version"] == v1["version"]
    assert report3["incumbent"]["scored_suite"] == report1["suite_version"]
    incumbent_tags = client.get_model_version(name, v1["version"]).tags
    assert (
        json.loads(incumbent_tags[f"modelyard.scores.{new_suite.version}"])
        == report3["incumbent"]["metrics"]
    )
    assert f"modelyard.scores.{report1['suite_version']}" in incumbent_tags

    # Lineage and ledger answer: which data, base, settings, scores, who promoted it and when.
    state = status(settings)
    by_version = {v["version"]: v for v in state["versions"]}
    lineage = by_version[v1["version"]]["lineage"]
    assert lineage["modelyard.dataset.version"] == "ds-a"
    assert lineage["modelyard.dataset.hash"] == manifest["content_hash"]
    assert lineage["modelyard.base_model"] == str(tiny_model)
    assert lineage["modelyard.trainer.config_hash"] == result1["config_hash"]
    assert lineage["modelyard.mlflow_run_id"] == result1["mlflow_run_id"]
    assert lineage["modelyard.airflow.dag_id"] == "finetune_model"
    assert lineage["modelyard.airflow.run_id"] == "run-1"
    assert len(lineage["modelyard.git_sha"]) in (40, len("unknown"))
    assert by_version[v1["version"]]["metrics"] == report1["candidate"]["metrics"]
    assert find_versions(settings, "ds-a") == [weak["version"], v1["version"], v2["version"]]
    assert by_version[v1["version"]]["suite_version"] == report1["suite_version"]
    assert by_version[v1["version"]]["compared_with"]["metrics"] == report1["incumbent"]["metrics"]
    assert by_version[v1["version"]]["gate_margins"]["rouge_l.threshold"] == pytest.approx(
        report1["candidate"]["metrics"]["rouge_l"] - settings.gate.thresholds["rouge_l"].threshold
    )
    assert by_version[weak["version"]]["gate_decision"] == "failed"
    assert by_version[weak["version"]]["gate_margins"]["rouge_l.threshold"] < 0
    assert by_version[v2["version"]]["rolled_back"]
    moves = [
        (e["action"], e["version"], e["to_stage"], e["actor"], e["dag_run_id"])
        for e in state["ledger"]
    ]
    me = os_user()  # the CLI records the OS account, and carol only as on_behalf_of
    assert moves == [
        ("register", weak["version"], None, "airflow", "run-weak"),
        ("register", v1["version"], "staging", "airflow", "run-1"),
        ("promote", v1["version"], "canary", "alice", "p-1"),
        ("promote", v1["version"], "production", "bob", "p-2"),
        ("register", v2["version"], "staging", "airflow", "run-2"),
        ("promote", v2["version"], "canary", "alice", None),
        ("promote", v2["version"], "production", "bob", "p-4"),
        ("rollback", v1["version"], "production", me, None),
    ]
    assert state["ledger"][-1]["on_behalf_of"] == "carol"
    assert all(e["at"] for e in state["ledger"])
    assert state["ledger"][-1]["from_version"] == v2["version"]

    capsys.readouterr()
    assert _cli("registry", "status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["aliases"] == {"production": v1["version"]}
    assert _cli("registry", "status") == 0
    table = capsys.readouterr().out
    assert f"production=v{v1['version']}" in table and "error rate up" in table
