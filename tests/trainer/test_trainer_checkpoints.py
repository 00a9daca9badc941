"""Only sealed, complete checkpoints are resumed from; anything half-written is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.checkpoints import REQUIRED_FILES, SEAL, latest_resumable, restore_from_mirror


def _checkpoint(root: Path, step: int, sealed: bool = True) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in REQUIRED_FILES:
        (path / name).write_text("{}")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if sealed:
        sizes = {name: (path / name).stat().st_size for name in REQUIRED_FILES}
        (path / SEAL).write_text(json.dumps({"sizes": sizes}))
    return path


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / SEAL).unlink(),  # killed before the seal was written
        lambda p: (p / "optimizer.pt").unlink(),  # sealed dir missing a state file
        lambda p: (p / "trainer_state.json").write_text('{"global_st'),  # truncated state
        lambda p: (p / SEAL).write_text('{"global_st'),  # a seal copied half (a mirror)
        lambda p: (p / "optimizer.pt").write_text("{"),  # a state file cut short
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


def test_a_half_mirrored_checkpoint_falls_back_to_the_older_one(tmp_path):
    """Preempted while mirroring: the newest mirrored checkpoint's seal or payload is cut
    short. A retry on a new worker restores the older, whole one instead of crashing."""
    mirror = tmp_path / "mirror"
    good = _checkpoint(mirror / "checkpoints", 2)
    cut = _checkpoint(mirror / "checkpoints", 4)
    (cut / SEAL).write_text((cut / SEAL).read_text()[:10])
    local = tmp_path / "worker" / "checkpoints"
    local.mkdir(parents=True)
    restored = restore_from_mirror(str(mirror), local)
    assert restored == local / good.name and latest_resumable(local) == restored
    assert sorted(p.name for p in local.iterdir()) == [good.name]  # nothing half-copied left
