"""Only sealed, complete checkpoints are resumed from; anything half-written is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.checkpoints import REQUIRED_FILES, SEAL, latest_resumable


def _checkpoint(root: Path, step: int, sealed: bool = True) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in REQUIRED_FILES:
        (path / name).write_text("{}")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if sealed:
        (path / SEAL).write_text("{}")
    return path


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / SEAL).unlink(),  # killed before the seal was written
        lambda p: (p / "optimizer.pt").unlink(),  # sealed dir missing a state file
        lambda p: (p / "trainer_state.json").write_text('{"global_st'),  # truncated state
    ],
)
def test_half_written_newest_checkpoint_is_skipped(tmp_path, damage):
    good = _checkpoint(tmp_path, 20)
    newest = _checkpoint(tmp_path, 100)  # numerically newest: checkpoint-100 > checkpoint-20
    damage(newest)
    assert latest_resumable(tmp_path) == good


def test_nothing_to_resume(tmp_path):
    assert latest_resumable(tmp_path / "missing") is None
    _checkpoint(tmp_path, 10, sealed=False)
    assert latest_resumable(tmp_path) is None
