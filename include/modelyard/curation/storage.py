"""Where curation reads and writes, and how it replaces a directory without a torn state.

Every storage path is built by ``storage_path`` so an ``ObjectStoragePath``/fsspec root can
replace local ``pathlib`` in one place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from modelyard.settings import Settings


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


def scratch_dir(final: Path) -> Path:
    """A fresh sibling of ``final`` to fill before ``replace_dir``; same filesystem, so the
    rename is atomic."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a filled scratch dir in for ``final`` (kept intact until the swap)."""
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
