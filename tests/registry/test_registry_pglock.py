"""The transition lock on a PostgreSQL tracking store is a database advisory lock."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy

from modelyard.registry.lock import _advisory_key, transition_lock

pytestmark = pytest.mark.postgres


def _try_lock(uri: str, key: int) -> bool:
    """From another session: can the advisory lock be taken right now? (released again)"""
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if got:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    engine.dispose()
    return bool(got)


def test_advisory_lock_excludes_other_sessions(settings, postgres_url) -> None:
    pg_settings = settings.model_copy(update={"mlflow_tracking_uri": postgres_url})
    key = _advisory_key(pg_settings.registered_model)
    assert _try_lock(postgres_url, key)
    with transition_lock(pg_settings):
        assert not _try_lock(postgres_url, key)
        assert not (Path(settings.home) / "locks").exists()  # not the file lock
    assert _try_lock(postgres_url, key)
