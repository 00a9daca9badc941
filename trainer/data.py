"""Curated JSONL -> TRL's conversational prompt-completion format.

``prompt`` is every turn before the final assistant turn and ``completion`` is that turn, so
TRL applies the chat template and computes the loss on the completion tokens only.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset


def _to_prompt_completion(row: dict) -> dict:
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def load_split(path: Path) -> Dataset:
    ds = Dataset.from_json(str(path))
    if "messages" not in ds.column_names:
        raise ValueError(f"{path}: curated records need a 'messages' column")
    return ds.map(_to_prompt_completion, remove_columns=ds.column_names)
