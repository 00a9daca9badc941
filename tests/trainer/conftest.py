"""Trainer fixtures: curated train/eval files, a small valid config, few threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trainer_helpers import CHILD_ENV, small_config, write_curated

torch.set_num_threads(2)  # in-process training shares two busy cores with other suites


@pytest.fixture(scope="session")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_curated(tmp_path_factory.mktemp("curated"))


@pytest.fixture
def make_config(tmp_path: Path, tiny_model: Path, curated: Path):
    """A valid trainer config dict for the tiny model; keyword overrides replace top-level keys."""
    return lambda **overrides: small_config(tiny_model, curated, tmp_path, **overrides)


@pytest.fixture(autouse=True)
def _child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child trainers (subprocesses) get one thread each and no hub access."""
    for key, value in CHILD_ENV.items():
        monkeypatch.setenv(key, value)
