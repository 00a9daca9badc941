"""The transition lock holds across machines: two processes promoting at once through a real
``mlflow server`` leave one production version, for each lock backend; an ``http://`` store
without a shared lock is refused; waits are bounded; a dead holder frees the lock."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelyard.registry import promote, status
from modelyard.registry.artifacts import client_for
from modelyard.registry.connection import RegistryError
from modelyard.registry.lock import lock_target, transition_lock
from modelyard.settings import Settings
from tests.registry.concurrently import at_once, context, start
from tests.registry.stores import gated_version, staged_version, with_store

BACKENDS = ["postgres", "redis", "file"]


def _lock_url(request, backend: str, tmp_path: Path) -> str:
    if backend == "postgres":
        return request.getfixturevalue("postgres_url")
    if backend == "redis":
        return request.getfixturevalue("redis_url")
    return f"file://{tmp_path / 'shared-locks'}"


@pytest.fixture(params=BACKENDS)
def locked_http(request, settings, mlflow_http, tmp_path) -> Settings:
    """Settings on the real MLflow server with a shared lock of each backend."""
    return with_store(settings, mlflow_http, lock_url=_lock_url(request, request.param, tmp_path))


def _promote_worker(settings: Settings, barrier, results) -> None:
    # Each promoter has a home of its own, as on two machines: only a shared lock excludes.
    settings = settings.model_copy(
        update={"home": settings.home / multiprocessing.current_process().name}
    )
    barrier.wait()
    try:
        out = promote(
            settings, "production", actor=multiprocessing.current_process().name, reason="race"
        )
        results.put(("ok", out["version"]))
    except ValueError as exc:
        results.put(("refused", str(exc)))


def test_two_promotions_at_once_leave_one_production(locked_http: Settings) -> None:
    version = staged_version(locked_http)
    promote(locked_http, "canary", actor="setup", reason="race setup")

    outcomes = sorted(at_once(_promote_worker, [(locked_http,)] * 2, timeout=300))

    assert [o[0] for o in outcomes] == ["ok", "refused"], outcomes
    assert outcomes[0][1] == version
    assert "no version of" in outcomes[1][1] and "holds canary" in outcomes[1][1]
    state = status(locked_http)
    assert state["aliases"] == {"production": version}
    assert len([e for e in state["ledger"] if e["to_stage"] == "production"]) == 1


def test_a_shared_server_without_a_shared_lock_is_refused(settings, mlflow_http) -> None:
    unlocked = with_store(settings, mlflow_http)
    version = gated_version(unlocked)
    client_for(unlocked).set_registered_model_alias(unlocked.registered_model, "canary", version)
    with pytest.raises(RegistryError, match=r"refusing to move aliases unlocked.*LOCK_URL"):
        promote(unlocked, "production", actor="alice", reason="no lock")

    env = {
        **os.environ,
        "MODELYARD_MLFLOW_TRACKING_URI": mlflow_http,
        "MODELYARD_REGISTERED_MODEL": unlocked.registered_model,
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "modelyard"), "promote", "--to", "production"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "MODELYARD_REGISTRY__LOCK_URL" in done.stderr
    assert status(unlocked)["aliases"] == {"canary": version}  # nothing moved


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_held_lock_bounds_the_wait_of_the_next(request, settings, tmp_path, backend) -> None:
    store = with_store(settings, "http://unused", lock_url=_lock_url(request, backend, tmp_path))
    impatient = store.model_copy(
        update={"registry": store.registry.model_copy(update={"lock_wait_seconds": 1.0})}
    )
    with transition_lock(store):
        started = time.monotonic()
        with pytest.raises(RegistryError, match=rf"held the {backend} lock .* over 1 s"):
            with transition_lock(impatient):
                pass
        assert time.monotonic() - started < 30  # bounded, not stuck
    with transition_lock(impatient):  # free again once released
        pass


def _hold_forever(settings: Settings, held) -> None:
    with transition_lock(settings):
        held.set()
        time.sleep(600)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_holder_that_dies_frees_the_lock(request, settings, tmp_path, backend) -> None:
    store = with_store(
        settings,
        "http://unused",
        lock_url=_lock_url(request, backend, tmp_path),
        lock_lease_seconds=5.0,
        lock_wait_seconds=30.0,
    )
    ctx = context()
    held = ctx.Event()
    holder = start(ctx, _hold_forever, (store, held))
    try:
        assert held.wait(120)
    finally:
        holder.kill()  # SIGKILL: no release, no cleanup
        holder.join()
    with transition_lock(store):  # the connection died / the fcntl lock went / the lease ran out
        pass


def test_a_redis_lease_that_ran_out_is_never_used(settings, redis_url) -> None:
    store = with_store(settings, "http://unused", lock_url=redis_url, lock_lease_seconds=5.0)
    with pytest.raises(RegistryError, match="expired while held"):
        with transition_lock(store) as held:
            time.sleep(6)
            with pytest.raises(RegistryError, match="lost the transition lock"):
                held.confirm()


def test_which_lock_guards_which_store(settings, tmp_path) -> None:
    def target(uri: str, lock_url: str = "") -> tuple[str, str]:
        found = lock_target(with_store(settings, uri, lock_url=lock_url))
        return found.kind, found.where

    pg = "postgresql+psycopg2://u:secret@db/mlflow"
    assert target(pg) == ("postgres", pg)
    assert target(f"sqlite:///{tmp_path}/m/mlflow.db") == ("file", str(tmp_path / "m" / "locks"))
    assert target("http://mlflow:5000", "redis://r:6379/0") == ("redis", "redis://r:6379/0")
    assert target("http://mlflow:5000", pg) == ("postgres", pg)
    assert target("http://mlflow:5000", f"file://{tmp_path}") == ("file", str(tmp_path))
    for shared in ("http://mlflow:5000", "https://mlflow.example", "mysql://u:pw@db/mlflow"):
        with pytest.raises(RegistryError, match="no shared lock is configured"):
            target(shared)
    for unusable in ("memcached://x", "file://nfs-host/locks", "file:relative/locks"):
        with pytest.raises(RegistryError, match=rf"lock_url {unusable} is not"):
            target("http://mlflow:5000", unusable)
    with pytest.raises(RegistryError) as refused:
        target("http://u:hunter2@mlflow:5000")
    assert "hunter2" not in str(refused.value)
