"""Shared fixtures: an isolated embedded home per test and one tiny base model per session."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from modelyard.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# The tests' torch processes (Airflow's train task, gateways, `dags test`) share two cores with
# Airflow's own: with two OpenMP threads each, a thread spin-waits for a partner that has no core
# (bench/trainer.py on a busy box: 40 tiny-model steps took 2.2x as long as with one thread).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Work units for `make test`'s two workers (``--dist loadgroup``): the tests marked
    ``scheduler`` are one unit, started first and run one at a time (two busy schedulers on two
    cores starved each other's SQLite writes until one crashed), and every other file is a
    unit of its own, so its module fixtures are built once."""
    for item in items:
        group = "scheduler" if item.get_closest_marker("scheduler") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.get_closest_marker("scheduler") is None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama + tokenizer saved with save_pretrained, built once per run (both workers)."""
    from modelyard.tinymodel import build_tiny_model
    from tests.once import built_once

    return built_once(tmp_path_factory, "tiny-llama", build_tiny_model)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path):
    """Settings pointing every store (storage, MLflow) at a fresh directory of this test."""
    from modelyard import settings as settings_mod

    home = tmp_path / "home"
    monkeypatch.setenv("MODELYARD_HOME", str(home))
    monkeypatch.setenv("MODELYARD_BASE_MODEL", str(tiny_model))
    settings_mod.get_settings.cache_clear()
    yield settings_mod.get_settings()
    settings_mod.get_settings.cache_clear()


@pytest.fixture(scope="session")
def new_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Settings], None]:
    """Gives a home a new, empty SQLite MLflow store: a copy of one created once per session,
    since MLflow's migrations take 3-7 s per store on two busy cores."""
    from modelyard.registry.connection import ensure_store_created, sqlite_path

    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    ensure_store_created(f"sqlite:///{template}")

    def give(settings: Settings) -> None:
        target = sqlite_path(settings.tracking_uri)
        assert target is not None and not target.exists(), settings.tracking_uri
        target.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(template)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)  # consistent whatever MLflow's connections to the template hold

    return give


@pytest.fixture
def mlflow_store(settings, new_mlflow_store: Callable[[Settings], None]) -> None:
    """``settings`` with its empty MLflow store in place, as the first registry call leaves it.

    Opt in with ``pytest.mark.usefixtures``: what happens before a store exists is tested too.
    """
    new_mlflow_store(settings)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings on a fresh home (storage, request log) and no model: curation, feedback."""
    from modelyard import settings as settings_mod

    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    settings_mod.get_settings.cache_clear()
    yield settings_mod.get_settings()
    settings_mod.get_settings.cache_clear()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):
    """(host, port) of a PostgreSQL server: the local one, or one started for the session."""
    from tests.pg import postgres_server as server

    workdir = tmp_path_factory.mktemp("pg")
    workdir.chmod(0o777)
    with server(workdir) as address:
        yield address


@pytest.fixture
def postgres_url(postgres_server):
    """SQLAlchemy URL of a database created for this test and dropped after it."""
    from tests.pg import database

    with database(*postgres_server) as url:
        yield url
