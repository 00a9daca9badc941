"""Trainer fixtures: curated train/eval files, a small valid config, few threads, real S3."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch
from trainer_helpers import CHILD_ENV, small_config, write_curated

torch.set_num_threads(2)  # in-process training shares two busy cores with other suites


@pytest.fixture(scope="session")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_curated(tmp_path_factory.mktemp("curated"))


@pytest.fixture
def make_config(tmp_path: Path, tiny_model: Path, curated: Path):
    """A valid trainer config dict for the tiny model; keyword overrides replace top-level keys."""
    return lambda **overrides: small_config(tiny_model, curated, tmp_path, **overrides)


@pytest.fixture(autouse=True)
def _child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child trainers (subprocesses) get one thread each and no hub access."""
    for key, value in CHILD_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<bucket>`` on moto's standalone S3 server on loopback (a real S3 API over HTTP).

    The endpoint and credentials go into the environment, where s3fs, boto3 and the trainer
    subprocesses find them, as they would on a worker.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.net import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "modelyard-test",
        "AWS_SECRET_ACCESS_KEY": "modelyard-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"modelyard-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield f"s3://{bucket}"
    server.stop()
