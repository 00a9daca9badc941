"""Where curation reads and writes, and how it replaces a directory without a torn state.

Every storage path is built by ``storage_path`` so an ``ObjectStoragePath``/fsspec root can
replace local ``pathlib`` in one place. Directories are only ever replaced when this tool
wrote them (``check_output``); scratch siblings are named for their host and pid, so a run
removes the scratch that killed runs of this host left behind (``scratch_dir``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import IO

from modelyard.settings import Settings

MARKER = ".modelyard-curation"  # in every curation output: what may be replaced
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())
_SCRATCH = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.(?P<kind>tmp|old)$")


class UnsafeOutput(ValueError):
    """An output directory whose replacement could destroy data."""


def storage_path(settings: Settings, *parts: str) -> Path:
    """``<storage>/<parts...>``; local for now (s3:// roots would plug in here)."""
    return Path(settings.storage).joinpath(*parts)


def write_json(path: Path, obj: object) -> None:
    """Write JSON next to ``path`` then rename over it: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output(output: Path, inputs: list[Path]) -> Path:
    """The real path to (re)write ``output`` at, or ``UnsafeOutput``: it may not be, contain
    or lie inside any of ``inputs`` (symlinks and relative paths resolved), nor replace
    anything but an empty directory or a curation output (one holding ``MARKER``)."""
    real = output.resolve()
    for source in inputs:
        if _overlaps(real, source.resolve()):
            raise UnsafeOutput(
                f"refusing output {output}: it overlaps the input {source}; choose a directory "
                "outside the input"
            )
    if not real.exists():
        return real
    if not real.is_dir():
        raise UnsafeOutput(f"refusing output {output}: it exists and is not a directory")
    if not (real / MARKER).is_file() and any(real.iterdir()):
        raise UnsafeOutput(
            f"refusing to replace {output}: it holds files and is not a curation output "
            f"(no {MARKER}); choose a new or empty directory"
        )
    return real


def mark_output(directory: Path, version: str) -> None:
    (directory / MARKER).write_text(json.dumps({"version": version}) + "\n", encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_scratch(parent: Path, name: str | None) -> None:
    """Remove scratch of ``parent`` that dead processes of this host left: for ``name``, or
    for every name (directories only this tool writes). An interrupted swap's ``.old`` is
    put back when its directory is missing, not deleted."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        found = _SCRATCH.match(entry.name)
        if not found or found["host"] != _HOST or (name is not None and found["name"] != name):
            continue
        if _alive(int(found["pid"])):
            continue
        final = parent / found["name"]
        if found["kind"] == "old" and not final.exists():
            os.replace(entry, final)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def scratch_dir(final: Path, every_name: bool = False, private: bool = False) -> Path:
    """A fresh sibling of ``final`` to fill before ``replace_dir``; same filesystem, so the
    rename is atomic; 0700 if ``private``. Stale scratch of ``final`` (of any sibling with
    ``every_name``) goes first."""
    remove_stale_scratch(final.parent, None if every_name else final.name)
    tmp = final.with_name(f".{final.name}.{_HOST}-{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700 if private else 0o777)
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a filled scratch dir in for ``final`` (kept intact until the swap)."""
    old = final.with_name(f".{final.name}.{_HOST}-{os.getpid()}.old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def private_dir(path: Path) -> Path:
    """``path`` and its parent as directories only this user can enter (0700)."""
    for directory in (path.parent, path):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    return path


def private_file(path: Path) -> IO[bytes]:
    """A new file only this user can read (0600 from creation, not chmod-ed after)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def prune_older(root: Path, days: int) -> list[Path]:
    """Remove the ``<root>/<group>/<entry>`` directories last changed ``days`` or more days
    ago (all of them for 0), scratch that dead processes left there, and groups left empty;
    returns what was removed (scratch aside)."""
    if not root.is_dir():
        return []
    cutoff = time.time() - days * 86400
    removed = []
    for group in root.iterdir():
        if not group.is_dir():
            continue
        remove_stale_scratch(group, None)
        for entry in group.iterdir():
            if not _SCRATCH.match(entry.name) and entry.stat().st_mtime <= cutoff:
                shutil.rmtree(entry)
                removed.append(entry)
        if not any(group.iterdir()):
            group.rmdir()
    return removed
