from __future__ import annotations

import pytest
from evaluation.helpers import (  # noqa: F401  (shared session fixtures)
    eval_sample,
    good_adapter,
    other_good_adapter,
    weak_adapter,
)


@pytest.fixture(scope="session")
def mlflow_http(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of one real ``mlflow server`` (SQLite backend) shared by the session's tests."""
    from tests.registry.mlflow_server import mlflow_server

    workdir = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(workdir, f"sqlite:///{workdir / 'mlflow.db'}") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Redis server: the local one, or a throwaway ``redis-server`` for the session."""
    from tests.orchestration.distributed import redis_broker

    with redis_broker(tmp_path_factory.mktemp("redis")) as url:
        yield url
