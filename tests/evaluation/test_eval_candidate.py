"""evaluate_candidate on a real MLflow store: weak refused, good approved, planted leaks block."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.helpers import publish_dataset, train_result
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from modelyard.evaluation import evaluate_candidate
from modelyard.evaluation.suite import current_suite


def test_weak_candidate_is_refused_with_reasons(
    settings, tiny_model, weak_adapter, eval_sample
) -> None:
    manifest = publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    result = train_result(settings, weak_adapter, tiny_model, "weak")
    report = evaluate_candidate(result, settings, manifest)
    assert not report["passed"]
    assert "rouge_l.threshold" in report["gate"]["failed"]
    failed = {c["name"]: c for c in report["gate"]["checks"] if not c["passed"]}
    assert failed["rouge_l.threshold"]["margin"] < 0
    assert report["incumbent"]["kind"] == "base"
    assert report["suite_version"] == current_suite(settings).version


def test_good_candidate_passes_and_everything_is_logged(
    settings, tiny_model, good_adapter, eval_sample
) -> None:
    manifest = publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    result = train_result(settings, good_adapter, tiny_model, "good")
    report = evaluate_candidate(result, settings, manifest)
    assert report["passed"], report["gate"]["failed"]
    cand, base = report["candidate"]["metrics"], report["incumbent"]["metrics"]
    assert cand["rouge_l"] > base["rouge_l"] and cand["eval_loss"] < base["eval_loss"]
    assert {c["name"] for c in report["gate"]["checks"]} >= {
        "rouge_l.threshold",
        "rouge_l.min_absolute_change",
        "format_validity.threshold",
        "exact_match.min_absolute_change",
        "contamination.manifest",
        "contamination.overlap",
    }

    run = MlflowClient(settings.tracking_uri).get_run(result["mlflow_run_id"])
    assert run.data.tags["modelyard.suite_version"] == report["suite_version"]
    assert run.data.metrics["suite/rouge_l"] == cand["rouge_l"]
    stored = json.loads(Path(download_artifacts(report["artifacts"]["report"])).read_text())
    assert stored["gate"]["passed"] and stored["suite_version"] == report["suite_version"]
    assert Path(download_artifacts(report["artifacts"]["chart"])).read_bytes()[:4] == b"\x89PNG"
    predictions = Path(download_artifacts(report["artifacts"]["predictions"])).read_text()
    assert len(predictions.splitlines()) == len(eval_sample["eval"])


def test_planted_eval_leak_blocks_the_gate(settings, tiny_model, good_adapter, eval_sample) -> None:
    publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    suite_ids = [r["id"] for r in eval_sample["eval"][:2]]
    leaked = [{**r, "id": f"train-{r['id']}"} for r in eval_sample["eval"][:2]]
    # Curation claims a clean dataset, yet two suite records reached its training file.
    manifest = publish_dataset(settings.storage, "ds-leaky", eval_sample["train"] + leaked, [])
    report = evaluate_candidate(
        train_result(settings, good_adapter, tiny_model, "leaky"), settings, manifest
    )
    assert report["gate"]["failed"] == ["contamination.overlap"]
    assert sorted(report["contamination"]["overlap_ids"]) == sorted(suite_ids)

    manifest["contamination"] = {"leaked_to_train": 3}
    report = evaluate_candidate(
        train_result(settings, good_adapter, tiny_model, "reported"), settings, manifest
    )
    assert "contamination.manifest" in report["gate"]["failed"]
