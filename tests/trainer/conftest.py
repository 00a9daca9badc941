"""Trainer fixtures: curated train/eval files made from the sample data, and a small config.

The curated shape is produced here by a few lines of conversion rather than by
``modelyard.curation``, so the trainer's tests do not depend on the curator.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from pathlib import Path

import pytest

from modelyard.sampledata import write_partition

# Subprocess trainers and in-process training share two busy cores with other suites.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
             "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}


def _messages(raw: dict) -> list[dict]:
    if "messages" in raw:
        return raw["messages"]
    if "prompt" in raw:
        user, answer = raw["prompt"], raw["completion"]
    else:
        user, answer = f"{raw['instruction']}\n{raw['input']}", raw["output"]
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def write_curated(root: Path, n: int = 240, eval_every: int = 6) -> Path:
    """``root/{train,eval}.jsonl`` in the curated record shape, exact duplicates dropped."""
    raw = write_partition(root / "raw", date(2026, 1, 1), n=n)
    seen, splits = set(), {"train": [], "eval": []}
    for line_no, line in enumerate(raw.read_text().splitlines(), 1):
        messages = _messages(json.loads(line))
        key = json.dumps(messages)
        if key in seen:
            continue
        seen.add(key)
        split = "eval" if len(seen) % eval_every == 0 else "train"
        splits[split].append({
            "id": f"r{line_no}", "messages": messages,
            "prompt": "\n".join(m["content"] for m in messages[:-1]),
            "completion": messages[-1]["content"],
            "source": {"file": str(raw), "line": line_no}, "quality_score": None, "split": split,
        })
    out = root / "dataset"
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.fixture(scope="session")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_curated(tmp_path_factory.mktemp("curated"))


@pytest.fixture
def make_config(tmp_path: Path, tiny_model: Path, curated: Path):
    """A valid trainer config dict for the tiny model; keyword overrides replace top-level keys."""

    def make(**overrides) -> dict:
        cfg = {
            "backend": "hf",
            "base_model": str(tiny_model),
            "train_file": str(curated / "train.jsonl"),
            "eval_file": str(curated / "eval.jsonl"),
            "output_dir": str(tmp_path / "run"),
            "max_seq_length": 128,
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
            "learning_rate": 5e-3,
            "max_steps": 20,
            "batch_size": 8,
            "eval_steps": 10,
            "save_steps": 10,
            "logging_steps": 5,
            "seed": 7,
            "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                       "experiment": "trainer-tests", "run_name": "test"},
        }
        cfg.update(overrides)
        return cfg

    return make


def trainer_cmd(config_file: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "--config", str(config_file)]
