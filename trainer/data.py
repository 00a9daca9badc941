"""Curated JSONL -> TRL's conversational prompt-completion format, read from any storage URL.

``prompt`` is every turn before the final assistant turn and ``completion`` is that turn, so
TRL applies the chat template and computes the loss on the completion tokens only. The data may
sit on the storage root (``s3://...``, ``file://...`` or a path): remote files are copied into the
run dir first, because ``datasets`` memory-maps what it reads and training must not depend on the
network after it started.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.config import ConfigError, TrainerConfig

if TYPE_CHECKING:  # the config checks import this module before the training stack loads
    from datasets import Dataset


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def check_file(field: str, url: str) -> None:
    """One-line ``ConfigError`` naming ``field`` unless ``url`` is a file that can be read.

    ``fs.info`` rather than ``fs.isfile``: the latter answers False for a storage it cannot
    reach, which would blame a missing file for a network or credentials problem.
    """
    try:
        fs, path = _fs(url)
        if fs.info(path)["type"] == "file":
            return
    except FileNotFoundError:
        pass
    except Exception as err:  # s3fs/botocore raise many types; the reason is what matters
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{field}: cannot reach {url}: {reason}") from None
    raise ConfigError(f"{field}: file does not exist: {url}")


def local_copy(url: str, scratch: Path, name: str) -> Path:
    """A local path holding ``url``: the file itself when it is local, else a copy in ``scratch``
    (written under a temporary name and renamed, so a killed download is never taken as data)."""
    from fsspec.implementations.local import LocalFileSystem

    fs, path = _fs(url)
    if isinstance(fs, LocalFileSystem):
        return Path(path)
    scratch.mkdir(parents=True, exist_ok=True)
    dest = scratch / f"{name}{Path(path).suffix}"
    partial = dest.with_name(f".{dest.name}.part")
    fs.get_file(path, str(partial))
    os.replace(partial, dest)
    return dest


def _to_prompt_completion(row: dict) -> dict:
    messages = row["messages"]
    if len(messages) < 2 or messages[-1].get("role") != "assistant":
        raise ValueError(f"{len(messages)} turn(s), the last not the assistant's")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def load_split(path: Path, field: str = "train_file") -> Dataset:
    """The curated records of ``path``; a file that cannot be trained on is a one-line
    ``ConfigError`` naming ``field`` (exit 2: a retry would fail the same way)."""
    from datasets import Dataset

    with path.open("rb") as f:
        if not any(line.strip() for line in f):
            raise ConfigError(f"{field}: {path} holds no records")
    try:
        ds = Dataset.from_json(str(path))
    except Exception as err:  # datasets wraps the JSON/Arrow error in many types
        cause = err.__cause__ or err
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise ConfigError(f"{field}: {path} is not JSON lines of records: {reason}") from None
    if "messages" not in ds.column_names:
        raise ConfigError(f"{field}: {path}: curated records need a 'messages' column")
    try:
        return ds.map(_to_prompt_completion, remove_columns=ds.column_names)
    except (IndexError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            f"{field}: {path}: a record's messages are not turns ending in the answer ({err})"
        ) from None


def load_splits(cfg: TrainerConfig) -> tuple[Dataset, Dataset]:
    """Train and validation sets. Without an ``eval_file`` the validation set is a seeded slice
    of the training data: early stopping and best-checkpoint selection must not look at the
    held-out eval suite, or the gate would score a model chosen on its own test set."""
    scratch = cfg.output_dir / "data"
    train = load_split(local_copy(cfg.train_file, scratch, "train_file"))
    if cfg.eval_file is not None:
        return train, load_split(local_copy(cfg.eval_file, scratch, "eval_file"), "eval_file")
    if len(train) - math.ceil(cfg.validation_fraction * len(train)) < 1:  # as the split counts
        raise ConfigError(
            f"train_file: {len(train)} record(s) leave none to train on beside a "
            f"{cfg.validation_fraction:g} validation slice"
        )
    parts = train.train_test_split(test_size=cfg.validation_fraction, seed=cfg.seed)
    return parts["train"], parts["test"]
