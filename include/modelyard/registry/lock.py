"""One lock around every alias transition, so two promotions never interleave, on any topology.

The lock must be shared by every machine that can move an alias, so its backend follows the
tracking store unless ``registry.lock_url`` names one:

- ``postgresql://...`` (or a PostgreSQL tracking store): a session-level advisory lock in that
  database; a holder that dies loses its connection, and the lock with it.
- ``redis://...``: redis-py's ``Lock``, a key with a random token and a lease
  (``registry.lock_lease_seconds``), so a crashed holder frees it; the token is checked before
  each transition writes (:meth:`Held.confirm`) and on release.
- ``file:///dir`` (or a local SQLite/file tracking store): an exclusive ``fcntl`` lock on
  ``<dir>/<model>.lock``, beside the store, so every home using that store shares it. Correct
  only where every writer runs on this machine.

An ``http://`` tracking server may be shared by many machines, so without a shared
``lock_url`` a transition is refused rather than run under a lock that excludes nobody.
Every wait is bounded (``registry.lock_wait_seconds``).
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy

from modelyard.registry.connection import (
    RegistryError,
    StoreUnavailable,
    sqlite_path,
)
from modelyard.settings import Settings
from trainer.redaction import redact_url

_FILE_POLL_S = 0.05


@dataclass(frozen=True)
class LockTarget:
    kind: str  # "postgres" | "redis" | "file"
    where: str  # a URL, or the directory of the lock file


@dataclass
class Held:
    """The held lock; :meth:`confirm` raises if it was lost (a Redis lease that ran out)."""

    target: LockTarget
    confirm: Callable[[], None]


def _advisory_key(namespace: str, name: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"{namespace}:{name}".encode()).digest()[:8], "big", signed=True
    )


def lock_target(settings: Settings) -> LockTarget:
    """Which lock guards transitions for these settings, or a one-line refusal why none can."""
    url = settings.registry.lock_url
    if url:
        scheme = urlsplit(url).scheme
        if scheme.startswith("postgresql"):
            return LockTarget("postgres", url)
        if scheme in ("redis", "rediss", "unix"):
            return LockTarget("redis", url)
        parts = urlsplit(url)
        # file:///dir only: in file://host/dir the host would be dropped without a word.
        if scheme == "file" and parts.path.startswith("/") and parts.netloc in ("", "localhost"):
            return LockTarget("file", parts.path)
        raise RegistryError(
            f"registry.lock_url {redact_url(url)} is not a postgresql://, redis:// or "
            "file:///<absolute dir> URL"
        )
    uri = settings.tracking_uri
    if uri.startswith("postgresql"):
        return LockTarget("postgres", uri)
    database = sqlite_path(uri)
    if database is not None:
        return LockTarget("file", str(database.parent / "locks"))
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file"):
        return LockTarget("file", str(Path(urlsplit(uri).path if scheme else uri).parent / "locks"))
    raise RegistryError(
        f"refusing to move aliases unlocked: the MLflow tracking store {redact_url(uri)} can be "
        "shared by several machines and no shared lock is configured; set registry.lock_url "
        "(MODELYARD_REGISTRY__LOCK_URL) to a postgresql:// or redis:// URL that every "
        "scheduler and worker reaches"
    )


def _busy(settings: Settings, target: LockTarget) -> RegistryError:
    return RegistryError(
        f"another transition of {settings.registered_model} held the {target.kind} lock "
        f"({redact_url(target.where)}) for over {settings.registry.lock_wait_seconds:g} s "
        "(registry.lock_wait_seconds): try again when it is done"
    )


def _unusable(target: LockTarget, cause: object) -> StoreUnavailable:
    return StoreUnavailable(
        f"cannot use the transition lock at {redact_url(target.where)}: "
        + " ".join(str(cause).split())
    )


@contextmanager
def _postgres(settings: Settings, target: LockTarget) -> Iterator[Held]:
    knobs = settings.registry
    url = sqlalchemy.engine.make_url(target.where)
    if url.drivername == "postgresql":  # the driver modelyard installs, not SQLAlchemy's default
        url = url.set(drivername="postgresql+psycopg2")
    engine = sqlalchemy.create_engine(
        url,
        poolclass=sqlalchemy.pool.NullPool,
        isolation_level="AUTOCOMMIT",  # a session lock: no transaction left open while held
        connect_args={"connect_timeout": knobs.http_timeout_seconds},
    )
    key = _advisory_key(knobs.lock_namespace, settings.registered_model)
    try:
        conn = engine.connect()
    except sqlalchemy.exc.OperationalError as exc:
        engine.dispose()
        raise _unusable(target, exc.orig) from None
    try:
        try:
            # lock_timeout bounds the wait of pg_advisory_lock like any other lock wait.
            wait_ms = int(knobs.lock_wait_seconds * 1000)
            conn.execute(sqlalchemy.text(f"SET lock_timeout = {wait_ms}"))
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except sqlalchemy.exc.OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) == "55P03":  # lock_not_available
                raise _busy(settings, target) from None
            raise _unusable(target, exc.orig) from None

        def confirm() -> None:
            try:
                conn.execute(sqlalchemy.text("SELECT 1"))  # the session that holds the lock
            except sqlalchemy.exc.SQLAlchemyError:
                raise RegistryError(
                    f"lost the transition lock of {settings.registered_model}: the connection "
                    f"to {redact_url(target.where)} dropped; nothing was changed"
                ) from None

        try:
            yield Held(target, confirm)
        finally:
            # A session that is gone holds no advisory lock: nothing left to release then.
            with suppress(sqlalchemy.exc.SQLAlchemyError):
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()
        engine.dispose()


@contextmanager
def _redis(settings: Settings, target: LockTarget) -> Iterator[Held]:
    import redis
    from redis.exceptions import LockNotOwnedError, RedisError

    knobs = settings.registry
    client = redis.Redis.from_url(
        target.where,
        socket_connect_timeout=knobs.http_timeout_seconds,
        socket_timeout=knobs.http_timeout_seconds,
    )
    lock = client.lock(
        f"{knobs.lock_namespace}:transition-lock:{settings.registered_model}",
        timeout=knobs.lock_lease_seconds,
        blocking_timeout=knobs.lock_wait_seconds,
        thread_local=False,
    )
    lease = f"registry.lock_lease_seconds={knobs.lock_lease_seconds:g}"

    def confirm() -> None:
        try:
            lock.reacquire()  # token-checked: renews the lease only while it is still ours
        except LockNotOwnedError:
            raise RegistryError(
                f"lost the transition lock of {settings.registered_model}: its lease ({lease}) "
                "ran out before the transition started; nothing was changed"
            ) from None

    try:
        try:
            acquired = lock.acquire()
        except RedisError as exc:
            raise _unusable(target, exc) from None
        if not acquired:
            raise _busy(settings, target)
        try:
            yield Held(target, confirm)
        finally:
            try:
                lock.release()
            except LockNotOwnedError:
                raise RegistryError(
                    f"the transition lock of {settings.registered_model} expired while held "
                    f"({lease} is too short): check `modelyard registry status`"
                ) from None
            except RedisError as exc:
                raise _unusable(target, exc) from None
    finally:
        client.close()


@contextmanager
def _file(settings: Settings, target: LockTarget) -> Iterator[Held]:
    path = Path(target.where) / f"{settings.registered_model}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + settings.registry.lock_wait_seconds
    with path.open("a") as handle:
        # flock has no timeout: poll the non-blocking form until the deadline.
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _busy(settings, target) from None
                time.sleep(_FILE_POLL_S)
        try:
            yield Held(target, lambda: None)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_BACKENDS = {"postgres": _postgres, "redis": _redis, "file": _file}


@contextmanager
def transition_lock(settings: Settings) -> Iterator[Held]:
    """Hold the transition lock of ``settings.registered_model`` (see the module docstring)."""
    target = lock_target(settings)
    with _BACKENDS[target.kind](settings, target) as held:
        yield held
