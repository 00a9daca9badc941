"""The transition lock on a PostgreSQL tracking store is a database advisory lock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import sqlalchemy

from modelyard.registry.lock import _advisory_key, transition_lock

pytestmark = pytest.mark.postgres


def _as_postgres(*cmd: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres_uri():
    """A throwaway cluster on a unix socket, started for this module and stopped after."""
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("PostgreSQL binaries not installed")
    root = Path(tempfile.mkdtemp(prefix="mypg-"))
    root.chmod(0o777)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _as_postgres("initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust")
    _as_postgres("pg_ctl", "-D", str(root / "data"), "-w", "-l", str(root / "log"), "-o",
                 f"-k {root} -p {port} -c listen_addresses=''", "start")
    try:
        yield f"postgresql+psycopg2://postgres@/postgres?host={root}&port={port}"
    finally:
        _as_postgres("pg_ctl", "-D", str(root / "data"), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _try_lock(uri: str, key: int) -> bool:
    """From another session: can the advisory lock be taken right now? (released again)"""
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if got:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    engine.dispose()
    return bool(got)


def test_advisory_lock_excludes_other_sessions(settings, postgres_uri) -> None:
    pg_settings = settings.model_copy(update={"mlflow_tracking_uri": postgres_uri})
    key = _advisory_key(pg_settings.registered_model)
    assert _try_lock(postgres_uri, key)
    with transition_lock(pg_settings):
        assert not _try_lock(postgres_uri, key)
        assert not (Path(settings.home) / "locks").exists()  # not the file lock
    assert _try_lock(postgres_uri, key)
