"""A real S3 endpoint on loopback (moto's standalone server, as s3fs's own tests use) and
settings whose storage root is a fresh bucket prefix on it."""

from __future__ import annotations

import uuid

import pytest

from tests.net import free_port


@pytest.fixture(scope="session")
def s3_endpoint():
    """``http://127.0.0.1:<port>`` of a moto S3 server for the session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment a worker would have: endpoint and credentials; returns the endpoint."""
    for key, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    return s3_endpoint


@pytest.fixture
def bucket(s3_env) -> str:
    """A fresh bucket on the moto server."""
    import boto3

    name = f"modelyard-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(settings, bucket, monkeypatch: pytest.MonkeyPatch):
    """Settings of a fresh test home whose storage root is ``s3://<bucket>/data``."""
    import s3fs

    from modelyard import settings as settings_mod
    from modelyard import storage

    def forget() -> None:  # clients are cached with the endpoint they were made for
        settings_mod.get_settings.cache_clear()
        storage._OPTIONS.clear()
        s3fs.S3FileSystem.clear_instance_cache()

    monkeypatch.setenv("MODELYARD_STORAGE_ROOT", f"s3://{bucket}/data")
    forget()
    yield settings_mod.get_settings()
    forget()
