"""Helpers of the trainer tests: curated files from the sample data, configs, the CLI command.

The curated shape is produced here by a few lines of conversion rather than by
``modelyard.curation``, so the trainer's tests do not depend on the curator.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from modelyard.sampledata import write_partition

# Child trainers share two busy cores with other suites: one thread each, nothing from a hub.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
             "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
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
        "mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                   "artifact_location": str(root / "artifacts"),
                   "experiment": "trainer-tests", "run_name": "test"},
    } | overrides


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(json.dumps(cfg))
    return path


def trainer_cmd(config_file: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "--config", str(config_file)]
