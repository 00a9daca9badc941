"""Checkpoints that are safe to resume from, and their mirror on the storage root.

HF Trainer writes a checkpoint file by file, so a worker killed mid-save leaves a directory that
looks newest but cannot be resumed. A callback seals every checkpoint with a marker written last
(atomically); only sealed checkpoints whose state files are all present are ever resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from transformers import TrainerCallback

log = logging.getLogger(__name__)

SEAL = "modelyard-sealed.json"
REQUIRED_FILES = ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt",
                  "scheduler.pt")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def is_resumable(checkpoint: Path) -> bool:
    if not (checkpoint / SEAL).is_file():
        return False
    if not all((checkpoint / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except ValueError:
        return False
    return True


def latest_resumable(checkpoints_dir: Path) -> Path | None:
    """The newest sealed, complete checkpoint; half-written newer ones are skipped (and logged)."""
    if not checkpoints_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in checkpoints_dir.iterdir()
             if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    for _, path in sorted(found, reverse=True):
        if is_resumable(path):
            return path
        log.warning("skipping incomplete checkpoint %s", path)
    return None


def mirror(src: Path, dest_root: str) -> None:
    """Copy a file or directory to ``dest_root/<name>`` (local path or any fsspec URL)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(dest_root)
    target = f"{root.rstrip('/')}/{src.name}"
    if fs.exists(target):
        fs.rm(target, recursive=True)
    fs.makedirs(root, exist_ok=True)
    fs.put(str(src), target, recursive=src.is_dir())


class SealCheckpoints(TrainerCallback):
    """Seal each checkpoint after HF Trainer finished writing it, then mirror it."""

    def __init__(self, mirror_dir: str | None) -> None:
        self.mirror_dir = mirror_dir

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        write_atomic(checkpoint / SEAL, json.dumps({"global_step": state.global_step}))
        if self.mirror_dir:
            mirror(checkpoint, f"{self.mirror_dir.rstrip('/')}/checkpoints")
