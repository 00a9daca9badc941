"""Test helpers shared by tests/evaluation and tests/registry.

Adapters come from the real trainer (``hf`` backend, in-process) so the gate sees real good and
weak candidates; runs are real MLflow runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from modelyard.sampledata import curated_records, write_curated


def publish_dataset(
    storage: str, version: str, train: list[dict], evals: list[dict], leaked_to_train: int = 0
) -> dict:
    """Write a published dataset version the way curation lays it out; returns its manifest."""
    out = write_curated(Path(storage) / "datasets" / version, train, evals)
    manifest = {
        "version": version,
        "content_hash": hashlib.sha256(version.encode()).hexdigest(),
        "partition": "2026-01-01",
        "counts": {"train": len(train), "eval": len(evals)},
        "contamination": {"leaked_to_train": leaked_to_train},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def train_adapter(
    base_model: Path,
    records: list[dict],
    out_dir: Path,
    steps: int,
    seed: int = 0,
    lr: float = 5e-3,
) -> Path:
    """A LoRA adapter from the real trainer (``hf`` backend, in-process), copied to ``out_dir``."""
    from trainer.config import parse_config
    from trainer.train import run

    work = out_dir.with_name(out_dir.name + "-run")
    data = write_curated(work / "data", records, records[: max(4, len(records) // 10)])
    interval = max(1, steps // 2)
    cfg = parse_config(
        {
            "backend": "hf",
            "base_model": str(base_model),
            "train_file": str(data / "train.jsonl"),
            "eval_file": str(data / "eval.jsonl"),
            "output_dir": str(work / "run"),
            "max_seq_length": 128,
            "lora": {
                "r": 16,
                "alpha": 32,
                "dropout": 0.0,
                "target_modules": [
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ],
            },
            "learning_rate": lr,
            "max_steps": steps,
            "batch_size": 16,
            "seed": seed,
            "eval_steps": interval,
            "save_steps": interval,
            "logging_steps": interval,
            "early_stopping_patience": None,
            "mlflow": {
                "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                "artifact_location": str(work / "artifacts"),
                "experiment": "adapters",
            },
        }
    )
    shutil.copytree(run(cfg, "hf")["adapter_dir"], out_dir)
    return out_dir


def train_result(settings, adapter_dir: Path, base_model: Path, name: str) -> dict:
    """A real MLflow run standing for the trainer's run, and the result.json it would write."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    exp = client.get_experiment_by_name("modelyard-finetune")
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(
            "modelyard-finetune", artifact_location=settings.artifact_root
        )
    )
    run = client.create_run(exp_id, run_name=name)
    client.set_terminated(run.info.run_id)
    return {
        "mlflow_run_id": run.info.run_id,
        "adapter_dir": str(adapter_dir),
        "best_checkpoint": str(adapter_dir),
        "global_step": 1,
        "metrics": {},
        "config_hash": hashlib.sha256(name.encode()).hexdigest()[:12],
        "base_model": str(base_model),
        "base_revision": "local",
        "backend": "hf",
    }


@pytest.fixture(scope="session")
def eval_sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Disjoint train and held-out records of the sample task (deduplicated by id)."""
    records = curated_records(190)
    return {"train": records[:150], "eval": records[150:174], "later_eval": records[174:190]}


def _adapter(
    tmp_path_factory, tiny_model: Path, sample: dict, name: str, steps: int, seed: int = 0
) -> Path:
    """Trained once per pytest run, whichever worker and conftest asks first."""
    from tests.once import built_once

    return built_once(
        tmp_path_factory,
        f"adapter-{name}",
        lambda out: train_adapter(tiny_model, sample["train"], out, steps=steps, seed=seed),
    )


@pytest.fixture(scope="session")
def good_adapter(tmp_path_factory, tiny_model, eval_sample) -> Path:
    return _adapter(tmp_path_factory, tiny_model, eval_sample, "good", steps=50)


@pytest.fixture(scope="session")
def weak_adapter(tmp_path_factory, tiny_model, eval_sample) -> Path:
    return _adapter(tmp_path_factory, tiny_model, eval_sample, "weak", steps=1)


@pytest.fixture(scope="session")
def other_good_adapter(tmp_path_factory, tiny_model, eval_sample) -> Path:
    """A second good candidate with different weights (another seed)."""
    return _adapter(tmp_path_factory, tiny_model, eval_sample, "good-seed1", steps=50, seed=1)
