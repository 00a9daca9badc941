"""Checkpoints that are safe to resume from, and their mirror on the storage root.

HF Trainer writes a checkpoint file by file, so a worker killed mid-save leaves a directory that
looks newest but cannot be resumed. A callback seals every checkpoint with a marker written last
(atomically); only sealed checkpoints whose state files are all present are ever resumed from.
The seal names the recipe hash and the backend that wrote the checkpoint: a resume under another
recipe or backend (another optimizer, Unsloth's model instead of PEFT's) would load optimizer
state that belongs to a different training, so it is refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from trainer.config import ConfigError

log = logging.getLogger(__name__)

SEAL = "modelyard-sealed.json"
REQUIRED_FILES = ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _seal(checkpoint: Path) -> dict | None:
    """The checkpoint's seal, or None when it is missing or unreadable (a copy cut short)."""
    try:
        seal = json.loads((checkpoint / SEAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return seal if isinstance(seal, dict) else None


def is_resumable(checkpoint: Path) -> bool:
    """Sealed, every state file present at the size the seal recorded (a truncated copy, e.g.
    a mirror cut short by preemption, is not resumed: an older checkpoint is), and a readable
    ``trainer_state.json``. Seals written before sizes were recorded check presence only."""
    seal = _seal(checkpoint)
    if seal is None or not all((checkpoint / name).is_file() for name in REQUIRED_FILES):
        return False
    sizes = seal.get("sizes") or {}
    if any((checkpoint / name).stat().st_size != size for name, size in sizes.items()):
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
    found = [
        (int(m.group(1)), p)
        for p in checkpoints_dir.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and p.is_dir()
    ]
    for _, path in sorted(found, reverse=True):
        if is_resumable(path):
            return path
        log.warning("skipping incomplete checkpoint %s", path)
    return None


def mirror(src: Path, dest_root: str) -> None:
    """Copy a file or directory to ``dest_root/<name>`` (local path or any fsspec URL).

    Object stores have no atomic rename, so a checkpoint's seal is uploaded last: a copy cut
    short by preemption has no seal and is never restored.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(dest_root)
    target = f"{root.rstrip('/')}/{src.name}"
    if fs.exists(target):
        fs.rm(target, recursive=True)
    fs.makedirs(target if src.is_dir() else root, exist_ok=True)
    if not src.is_dir():
        fs.put_file(str(src), target)
        return
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.name == SEAL):
        fs.put_file(str(path), f"{target}/{path.relative_to(src).as_posix()}")


def fetch_file(mirror_dir: str, name: str, dest_dir: Path) -> bool:
    """Copy ``mirror_dir/name`` into ``dest_dir`` when the mirror has it."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(mirror_dir)
    remote = f"{root.rstrip('/')}/{name}"
    if not fs.exists(remote):
        return False
    fs.get_file(remote, str(dest_dir / name))
    return True


def check_resume(checkpoint: Path, config_hash: str, backend: str) -> None:
    """Refuse (one line) to resume a checkpoint another recipe or backend wrote."""
    seal = _seal(checkpoint) or {}
    written = (seal.get("config_hash"), seal.get("backend"))
    if written == (config_hash, backend):
        return
    raise ConfigError(
        f"resume: {checkpoint.name} in {checkpoint.parent} was written by recipe {written[0]} "
        f"on backend {written[1]}, this run is recipe {config_hash} on backend {backend}; "
        "resuming would load another training's optimizer state: use a new run dir "
        "(output_dir / mirror_dir) or restore the original config"
    )


def restore_from_mirror(mirror_dir: str, checkpoints_dir: Path) -> Path | None:
    """Bring the newest sealed checkpoint back from the mirror into ``checkpoints_dir``.

    This is what makes a retry on another worker (the preempted one's disk is gone) resume
    instead of starting over.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(f"{mirror_dir.rstrip('/')}/checkpoints")
    if not fs.exists(root):
        return None
    found = [
        (int(m.group(1)), path)
        for path in fs.ls(root, detail=False)
        if (m := _CHECKPOINT.match(path.rstrip("/").rsplit("/", 1)[-1]))
    ]
    for _, remote in sorted(found, reverse=True):
        if not fs.exists(f"{remote.rstrip('/')}/{SEAL}"):
            log.warning("skipping unsealed mirrored checkpoint %s", remote)
            continue
        local = checkpoints_dir / remote.rstrip("/").rsplit("/", 1)[-1]
        partial = local.with_name(f".{local.name}.restoring")
        shutil.rmtree(partial, ignore_errors=True)  # a killed restore's leftovers
        fs.get(remote.rstrip("/") + "/", str(partial), recursive=True)
        if is_resumable(partial):
            shutil.rmtree(local, ignore_errors=True)  # a local copy no resume could use
            os.replace(partial, local)
            log.info("restored %s from the mirror %s", local.name, mirror_dir)
            return local
        log.warning("skipping mirrored checkpoint %s: its files do not match its seal", remote)
        shutil.rmtree(partial, ignore_errors=True)
    return None


class SealCheckpoints(TrainerCallback):
    """Seal each checkpoint after HF Trainer finished writing it, then mirror it."""

    def __init__(self, mirror_dir: str | None, config_hash: str, backend: str) -> None:
        self.mirror_dir = mirror_dir
        self.stamp = {"config_hash": config_hash, "backend": backend}

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        sizes = {name: (checkpoint / name).stat().st_size for name in REQUIRED_FILES}
        seal = {"global_step": state.global_step, **self.stamp, "sizes": sizes}
        write_atomic(checkpoint / SEAL, json.dumps(seal))
        if self.mirror_dir:
            mirror(checkpoint, f"{self.mirror_dir.rstrip('/')}/checkpoints")
