"""One lock around every alias transition, so two promotions never interleave.

With a PostgreSQL tracking store the lock is a session-level advisory lock in that database,
which every scheduler and worker already reaches, so it holds across machines. Otherwise
(sqlite, the embedded default, where all writers share one disk anyway) it is an exclusive
``fcntl`` lock on ``<home>/locks/<model>.lock``.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelyard.settings import Settings


def _advisory_key(name: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"modelyard:{name}".encode()).digest()[:8], "big", signed=True
    )


@contextmanager
def transition_lock(settings: Settings) -> Iterator[None]:
    uri = settings.tracking_uri
    if uri.startswith("postgresql"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
        key = _advisory_key(settings.registered_model)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        engine.dispose()
        return
    path = Path(settings.home) / "locks" / f"{settings.registered_model}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
