"""Reaching the MLflow tracking store: bounded HTTP retries, no accidental stores, one-line errors.

MLflow reads its HTTP knobs from the environment at each request, so :func:`configure_http`
sets them from ``settings.registry`` wherever a client is built (``artifacts.client_for``); the
trainer, in its own environment, gets the same values from :func:`mlflow_http_env`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

import sqlalchemy
from mlflow.exceptions import MlflowException

from modelyard.settings import Settings
from trainer.redaction import redact, redact_url

P = ParamSpec("P")
R = TypeVar("R")
REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message is one line saying why."""


class StoreUnavailable(RegistryError):
    """The tracking store (or the lock backend) cannot be reached."""


class StoreMissing(RegistryError, FileNotFoundError):
    """A read-only command found no store where the settings say it is."""


#: The environment an ``mlflow server``/``mlflow ui`` that modelyard starts runs with: it runs no
#: MLflow server jobs (GenAI evaluation, prompt optimisation), whose huey consumer processes
#: would otherwise poll all day (87 CPU-s in one `make test` run on the 2-core box).
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_http_env(settings: Settings) -> dict[str, str]:
    """MLflow's own HTTP client knobs, from ``settings.registry`` (also for the trainer's env)."""
    knobs = settings.registry
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(knobs.http_timeout_seconds),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(knobs.http_max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(knobs.http_backoff_factor),
    }


def configure_http(settings: Settings) -> None:
    """Apply the HTTP knobs to this process (MLflow has no per-client setting for them)."""
    os.environ.update(mlflow_http_env(settings))


def is_remote(uri: str) -> bool:
    """Whether the tracking store is a server that other machines may share."""
    return urlsplit(uri).scheme in REMOTE_SCHEMES


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and ``:memory:``)."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database).resolve() if database and database != ":memory:" else None


def require_store(settings: Settings) -> None:
    """Refuse, without creating anything, when the configured store does not exist yet.

    MLflow creates (and migrates) a SQL store on first use, so a read-only command pointed at
    the wrong home would otherwise leave an empty store behind and report "nothing registered".
    """
    uri = settings.tracking_uri
    where = f"(tracking URI {redact_url(uri)}; MODELYARD_HOME={settings.home})"
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise StoreMissing(f"no MLflow store at {path} {where}: nothing is registered there")
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file"):
        local = Path(urlsplit(uri).path if scheme else uri)
        if not local.is_dir():
            raise StoreMissing(f"no MLflow store at {local} {where}: nothing is registered there")
        return
    if is_remote(uri):
        return  # a server owns its store; reaching it is checked by the first request
    try:
        engine = sqlalchemy.create_engine(
            uri,
            poolclass=sqlalchemy.pool.NullPool,
            connect_args=_connect_timeout(uri, settings.registry.http_timeout_seconds),
        )
    except (ImportError, sqlalchemy.exc.ArgumentError) as exc:  # no driver for the scheme
        raise StoreUnavailable(
            f"cannot open the MLflow store {redact_url(uri)}: {_root_cause(exc)}"
        ) from None
    try:
        with engine.connect() as conn:
            found = sqlalchemy.inspect(conn).has_table("registered_models")
    except sqlalchemy.exc.SQLAlchemyError as exc:  # down, refused, or not a database at all
        raise StoreUnavailable(
            f"cannot reach the MLflow store {redact_url(uri)}: {_root_cause(exc)}"
        ) from None
    finally:
        engine.dispose()
    if not found:
        raise StoreMissing(f"the database {where} holds no MLflow store: nothing is registered")


_CREATED: set[str] = set()


def ensure_store_created(uri: str) -> None:
    """Let one process create a new SQL store's tables while the others wait for it.

    MLflow's registry store creates the tables of a new database without a lock (its tracking
    store takes one), so processes opening a fresh store at once (two Airflow tasks; a task and
    the CLI) race in the migrations and one fails "table already exists" or "out-of-date
    schema". Done once per process and URI; servers and file stores own their creation.
    """
    if uri in _CREATED or is_remote(uri) or urlsplit(uri).scheme in ("", "file"):
        return
    from filelock import FileLock
    from mlflow import MlflowClient

    path = sqlite_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.parent / f".{path.name}.create.lock"
    else:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
        lock = Path(tempfile.gettempdir()) / f"modelyard-store-{digest}.lock"
    with FileLock(lock):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    _CREATED.add(uri)


def _connect_timeout(uri: str, seconds: int) -> dict:
    return {"connect_timeout": seconds} if uri.startswith(("postgresql", "mysql")) else {}


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of a chained exception, as one line ("Connection refused"), with any
    URL in it redacted (drivers quote the URL they were given)."""
    seen: set[int] = set()
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(exc))
        exc = nxt
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return redact(text) or type(exc).__name__


def _is_transport_failure(exc: BaseException) -> bool:
    """A request that never got an answer (refused, timed out, DNS), not an error reply."""
    import requests

    while exc is not None:
        if isinstance(exc, requests.RequestException | sqlalchemy.exc.OperationalError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def store_errors(settings: Settings) -> Iterator[None]:
    """Turn MLflow's failures into one-line :class:`RegistryError`s naming the store.

    Covers the whole class: a server that refuses, times out or does not resolve, a SQL store
    that cannot be reached, and the "not found" replies (``promote --version 99``).
    """
    uri = redact_url(settings.tracking_uri)
    knobs = settings.registry
    tries = (
        f" ({knobs.http_max_retries + 1} attempts, {knobs.http_timeout_seconds} s timeout each; "
        "registry.http_* settings)"
        if is_remote(settings.tracking_uri)
        else ""
    )
    try:
        yield
    except MlflowException as exc:
        if _is_transport_failure(exc):
            raise StoreUnavailable(
                f"cannot reach the MLflow tracking store {uri}{tries}: {_root_cause(exc)}"
            ) from None
        # Not found, a bad parameter, a server that is not MLflow's, a refused store kind: one
        # line with MLflow's own first line and code.
        first = (exc.message.strip().splitlines() or [exc.error_code])[0]
        raise RegistryError(f"{redact(first)} ({exc.error_code}; store {uri})") from None
    except sqlalchemy.exc.DatabaseError as exc:  # unreachable, or a file that is no database
        raise StoreUnavailable(
            f"cannot reach the MLflow tracking store {uri}: {_root_cause(exc)}"
        ) from None


def reports_store_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` under :func:`store_errors` for its ``settings`` argument."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        settings = signature.bind(*args, **kwargs).arguments["settings"]
        with store_errors(settings):
            return func(*args, **kwargs)

    return run
