"""Curated JSONL -> TRL's conversational prompt-completion format.

``prompt`` is every turn before the final assistant turn and ``completion`` is that turn, so
TRL applies the chat template and computes the loss on the completion tokens only.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from trainer.config import TrainerConfig


def _to_prompt_completion(row: dict) -> dict:
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def load_split(path: Path) -> Dataset:
    ds = Dataset.from_json(str(path))
    if "messages" not in ds.column_names:
        raise ValueError(f"{path}: curated records need a 'messages' column")
    return ds.map(_to_prompt_completion, remove_columns=ds.column_names)


def load_splits(cfg: TrainerConfig) -> tuple[Dataset, Dataset]:
    """Train and validation sets. Without an ``eval_file`` the validation set is a seeded slice
    of the training data: early stopping and best-checkpoint selection must not look at the
    held-out eval suite, or the gate would score a model chosen on its own test set."""
    train = load_split(cfg.train_file)
    if cfg.eval_file is not None:
        return train, load_split(cfg.eval_file)
    parts = train.train_test_split(test_size=cfg.validation_fraction, seed=cfg.seed)
    return parts["train"], parts["test"]
