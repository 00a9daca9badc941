"""Processes that open a new MLflow store at once: one creates it, the others wait and use it.

Under the scheduler, the first tasks to touch the registry (``evaluate``, ``canary_analysis``,
the CLI) can meet a store that does not exist yet; MLflow's registry store creates its tables
without a lock, so before ``ensure_store_created`` one of them failed in the migrations.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.settings import Settings
from tests.registry.concurrently import at_once


def _open_store(home: str, barrier, results) -> None:
    from modelyard.registry.artifacts import client_for

    settings = Settings(home=Path(home))
    barrier.wait()
    try:
        found = client_for(settings).search_registered_models()
        results.put(("ok", len(found)))
    except Exception as exc:  # the outcome under test is whether any process failed
        results.put(("failed", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))


def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path) -> None:
    processes = 4
    outcomes = at_once(_open_store, [(str(tmp_path / "home"),)] * processes, timeout=180)
    assert outcomes == [("ok", 0)] * processes
    assert (tmp_path / "home" / "mlflow" / "mlflow.db").is_file()
