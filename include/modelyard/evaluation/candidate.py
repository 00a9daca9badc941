"""Evaluate a trained candidate against the incumbent, like for like, and run the gate."""

from __future__ import annotations

import json
import posixpath
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from modelyard.evaluation import contamination
from modelyard.evaluation.gate import decide, resolve_gate
from modelyard.evaluation.report import write_chart, write_report
from modelyard.evaluation.scoring import SuiteScores, score
from modelyard.evaluation.suite import Suite, ensure_suite
from modelyard.registry import tags
from modelyard.registry.artifacts import client_for, load_causal_lm, load_model
from modelyard.settings import Settings
from modelyard.storage import as_path, local_dir


def _registered_tags(client: MlflowClient, name: str) -> dict[str, str]:
    try:
        return client.get_registered_model(name).tags
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def _production(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, "production")
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def score_incumbent(
    settings: Settings, suite: Suite, train_result: dict
) -> tuple[dict[str, Any], SuiteScores | None]:
    """The production version's scores on ``suite`` (re-scored and stored when missing or stale),
    or the candidate's base model's when nothing is in production yet."""
    client = client_for(settings)
    name = settings.registered_model
    mv = _production(client, name)
    if mv is None:
        base = load_causal_lm(train_result["base_model"], train_result.get("base_revision"))
        scores = score(*base, suite)
        return {
            "kind": "base",
            "label": "base model",
            "version": None,
            "base_model": train_result["base_model"],
            "metrics": scores.metrics,
            "rescored": True,
        }, scores
    info = {
        "kind": "production",
        "label": f"production v{mv.version}",
        "version": str(mv.version),
        "scored_suite": mv.tags.get(tags.SUITE_VERSION),
    }
    stored = mv.tags.get(tags.scores_tag(suite.version))
    if stored:
        return {**info, "metrics": json.loads(stored), "rescored": False}, None
    scores = score(*load_model(settings, mv.version), suite)
    client.set_model_version_tag(
        name, mv.version, tags.scores_tag(suite.version), json.dumps(scores.metrics, sort_keys=True)
    )
    return {**info, "metrics": scores.metrics, "rescored": True}, scores


def training_records(train_file: str, settings: Settings) -> list[dict]:
    """The records of the file the candidate was trained on (a path or a storage URL)."""
    with as_path(train_file, settings).open("r", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _log_run(
    client: MlflowClient,
    run_id: str,
    report: dict,
    candidate: SuiteScores,
    incumbent: SuiteScores | None,
) -> dict[str, str]:
    """Candidate metrics (named for the suite) and the per-record predictions, report and chart."""
    now = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[Metric(f"suite/{k}", v, now, 0) for k, v in candidate.metrics.items()]
    )
    client.set_tag(run_id, tags.SUITE_VERSION, report["suite_version"])
    artifact_uri = client.get_run(run_id).info.artifact_uri
    eval_dir = f"eval/{report['suite_version']}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for label, scores in (("predictions", candidate), ("incumbent_predictions", incumbent)):
            if scores is not None:
                (out / f"{label}.jsonl").write_text(
                    "".join(json.dumps(p) + "\n" for p in scores.predictions)
                )
        client.log_artifacts(run_id, tmp, eval_dir)
        gate_dir = out / "gate"
        gate_dir.mkdir()
        write_report(report, gate_dir / "report.json")
        write_chart(report, gate_dir / "comparison.png")
        client.log_artifacts(run_id, str(gate_dir), "gate")
    return {
        "predictions": f"{artifact_uri}/{eval_dir}/predictions.jsonl",
        "report": f"{artifact_uri}/gate/report.json",
        "chart": f"{artifact_uri}/gate/comparison.png",
    }


def evaluate_candidate(
    train_result: dict, settings: Settings, dataset_manifest: dict, train_file: str | None = None
) -> dict[str, Any]:
    """Score candidate and incumbent on the current suite, check contamination, run the gate.

    The leak check reads ``train_file``, the file the trainer was given (``finetune_model``
    passes its trainer config's: the training snapshot), not a path rebuilt from a version
    name; callers that trained on one published version may omit it (that version's
    ``train.jsonl``). Returns the JSON-able report (also logged to the candidate's MLflow run).
    """
    if train_file is None:
        train_file = posixpath.join(
            str(
                dataset_manifest.get("path")
                or posixpath.join(settings.storage, "datasets", dataset_manifest["version"])
            ),
            "train.jsonl",
        )
    suite = ensure_suite(settings)
    client = client_for(settings)
    gate = resolve_gate(
        settings.gate, _registered_tags(client, settings.registered_model).get(tags.GATE)
    )
    adapter = train_result["adapter_dir"]
    with local_dir(adapter, train_result.get("adapter_uri"), settings) as adapter_dir:
        candidate = score(
            *load_causal_lm(
                train_result["base_model"], train_result.get("base_revision"), str(adapter_dir)
            ),
            suite,
        )
    incumbent, incumbent_scores = score_incumbent(settings, suite, train_result)
    manifest_leaks = contamination.manifest_leaks(dataset_manifest)
    overlap = contamination.overlap_leaks(
        training_records(train_file, settings),
        suite.records(),
        gate.leak_ngram,
        gate.leak_coverage,
    )
    decision = decide(gate, candidate.metrics, incumbent["metrics"], manifest_leaks, overlap)
    report = {
        "suite_version": suite.version,
        "dataset_version": dataset_manifest["version"],
        "train_file": train_file,
        "candidate": {
            "mlflow_run_id": train_result["mlflow_run_id"],
            "adapter_dir": train_result["adapter_dir"],
            "base_model": train_result["base_model"],
            "metrics": candidate.metrics,
        },
        "incumbent": incumbent,
        "contamination": {"manifest_leaked_to_train": manifest_leaks, "overlap_ids": overlap},
        "gate": decision,
        "passed": decision["passed"],
    }
    report["artifacts"] = _log_run(
        client, train_result["mlflow_run_id"], report, candidate, incumbent_scores
    )
    return report
