"""Helpers of the trainer tests: curated files from the sample data, configs, the CLI command.

The curated records come from ``modelyard.sampledata`` rather than the curator, so the
trainer's tests do not depend on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from modelyard.sampledata import curated_records
from modelyard.sampledata import write_curated as write_curated_dataset

# Child trainers share two busy cores with other suites: one thread each, nothing from a hub.
CHILD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
}


def write_curated(root: Path, n: int = 200, eval_every: int = 6) -> Path:
    """``root/dataset/{train,eval}.jsonl``: the sample task in the curated shape."""
    records = curated_records(n)
    held_out = records[::eval_every]
    train = [r for i, r in enumerate(records) if i % eval_every]
    return write_curated_dataset(root / "dataset", train, held_out)


def small_config(model: Path, dataset: Path, root: Path, **overrides) -> dict:
    """A valid config that trains the tiny model for a few CPU steps; overrides replace keys."""
    return {
        "backend": "hf",
        "base_model": str(model),
        "train_file": str(dataset / "train.jsonl"),
        "eval_file": str(dataset / "eval.jsonl"),
        "output_dir": str(root / "run"),
        "max_seq_length": 128,
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "learning_rate": 5e-3,
        "max_steps": 20,
        "batch_size": 8,
        "eval_steps": 10,
        "save_steps": 10,
        "logging_steps": 5,
        "seed": 7,
        "mlflow": {
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "artifact_location": str(root / "artifacts"),
            "experiment": "trainer-tests",
            "run_name": "test",
        },
    } | overrides


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(json.dumps(cfg))
    return path


def trainer_cmd(config_file: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "--config", str(config_file)]
