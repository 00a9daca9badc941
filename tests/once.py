"""Build an expensive, read-only test input once per ``pytest`` run, across xdist workers.

Each xdist worker is a session of its own, so a session fixture alone builds its input once
per worker; the workers share the run's base temp directory, where the first to take the lock
builds and the others wait for it (the pattern pytest-xdist documents for this).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """``<run temp>/shared/<name>``, filled by ``build(path)`` in the first process that asks.

    A build that failed leaves no ``<name>.built`` marker beside it: the next caller starts
    again from empty.
    """
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(exist_ok=True)
    out = root / name
    with FileLock(str(root / f"{name}.lock")):
        done = root / f"{name}.built"
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            build(out)
            done.touch()
    return out
