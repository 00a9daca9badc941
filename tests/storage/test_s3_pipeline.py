"""The pipeline on an ``s3://`` storage root, against a real S3 endpoint (moto) on loopback.

The task functions the DAGs call, in DAG order, with ``MODELYARD_STORAGE_ROOT=s3://...`` and
MLflow artifacts in the same bucket: nothing may fall back to a local path; every artifact
must be an object in the bucket. Also: an unreachable root fails with the URL and the reason,
and a publish killed mid-upload leaves no readable version, then the re-run completes it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import boto3
import pytest
import s3fs

from modelyard import storage
from modelyard.sampledata import write_partition
from modelyard.tasks.curation import curate_partition, publish_partition, validate_partition

PARTITION = "2026-10-01"


def _keys(endpoint: str, bucket: str, prefix: str) -> list[str]:
    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2")
    return [
        o["Key"]
        for p in pages.paginate(Bucket=bucket, Prefix=prefix)
        for o in p.get("Contents", [])
    ]


def _upload_raw(settings, tmp_path: Path, day: str = PARTITION, n: int = 120) -> None:
    local = write_partition(tmp_path / "raw", date.fromisoformat(day), n=n)
    storage.upload_dir(local.parent, storage.storage_path(settings, "raw", day))


def test_pipeline_on_s3_root_keeps_everything_in_the_bucket(
    s3_settings, s3_env, bucket, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    from mlflow import MlflowClient

    from modelyard import settings as settings_mod
    from modelyard.evaluation import evaluate_candidate
    from modelyard.registry import register_candidate
    from modelyard.tasks.snapshots import plan_training
    from modelyard.training import run_trainer

    monkeypatch.setenv("MODELYARD_MLFLOW_ARTIFACT_ROOT", f"s3://{bucket}/mlflow")
    settings_mod.get_settings.cache_clear()
    settings = settings_mod.get_settings()
    assert settings.storage == f"s3://{bucket}/data"

    assert curate_partition("2026-09-30", settings) == {
        "status": "missing",
        "partition": "2026-09-30",
    }
    _upload_raw(settings, tmp_path)
    curated = curate_partition(PARTITION, settings)
    assert curated["staging_dir"] == f"s3://{bucket}/data/staging/{PARTITION}"
    gate = validate_partition(curated["staging_dir"], settings)
    assert gate["success"]
    published = publish_partition(curated["staging_dir"], settings)
    version = published["version"]
    assert published["new"] and published["path"] == f"s3://{bucket}/data/datasets/{version}"
    assert publish_partition(curated["staging_dir"], settings)["new"] is False

    keys = set(_keys(s3_env, bucket, "data/"))
    for name in ("train.jsonl", "eval.jsonl", "rejected.jsonl", "manifest.json", "index/meta.json"):
        assert f"data/datasets/{version}/{name}" in keys, name
    assert f"data/datasets/{version}/gx/result.json" in keys
    assert f"data/datasets/_by_date/{PARTITION}.json" in keys
    assert any(k.startswith(f"data/quarantine/{PARTITION}/{version}/") for k in keys)
    # The gate's verdict went back into the store's staging manifest.
    staged = storage.read_json(
        storage.storage_path(settings, "staging", PARTITION, "manifest.json")
    )
    assert staged["gx"]["success"]
    assert not (Path(settings.home) / "data").exists(), "nothing may land on a local root"

    plan = plan_training({"max_steps": 6}, [], "manual__s3", settings)
    snapshot = plan["dataset"]["snapshot"]
    assert snapshot["versions"] == [version]
    train_file = plan["trainer_config"]["train_file"]
    assert train_file == f"s3://{bucket}/data/snapshots/{snapshot['id']}/train.jsonl"
    trained = run_trainer(plan["trainer_config"], settings)
    # Evaluate and register on "another machine": the gpu worker's local run dir is gone, the
    # adapter is read from its mirror in the bucket.
    assert trained["adapter_uri"] == f"s3://{bucket}/data/runs/manual__s3/adapter"
    shutil.rmtree(Path(trained["adapter_dir"]).parent)
    report = evaluate_candidate(trained, settings, plan["dataset"], train_file)
    assert report["train_file"] == train_file
    registered = register_candidate(
        trained,
        report,
        plan["dataset"],
        {"dag_id": "finetune_model", "run_id": "manual__s3"},
        settings,
    )
    assert registered

    keys = set(_keys(s3_env, bucket, ""))
    assert f"data/snapshots/{snapshot['id']}/manifest.json" in keys
    assert any(k.startswith("data/runs/manual__s3/") for k in keys), "checkpoints mirrored"
    suite = report["suite_version"]
    assert {f"data/eval-suites/{suite}/suite.json", "data/eval-suites/CURRENT"} <= keys
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(trained["mlflow_run_id"])
    assert run.info.artifact_uri.startswith(f"s3://{bucket}/mlflow/")
    artifacts = [k for k in keys if k.startswith("mlflow/")]
    assert any(k.endswith("gate/report.json") for k in artifacts), artifacts[:20]


def test_unreachable_root_fails_with_url_and_reason(s3_settings, s3_env, monkeypatch):
    from modelyard import settings as settings_mod

    monkeypatch.setenv("MODELYARD_STORAGE_ROOT", "s3://no-such-bucket-here/data")
    settings_mod.get_settings.cache_clear()
    with pytest.raises(storage.StorageError, match=r"s3://no-such-bucket-here/data .*bucket"):
        curate_partition(PARTITION, settings_mod.get_settings())

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    s3fs.S3FileSystem.clear_instance_cache()
    settings_mod.get_settings.cache_clear()
    with pytest.raises(storage.StorageError, match=r"unreachable: Could not connect"):
        curate_partition(PARTITION, settings_mod.get_settings())

    monkeypatch.setenv("MODELYARD_STORAGE_ROOT", "/nonexistent/modelyard-root")
    settings_mod.get_settings.cache_clear()
    with pytest.raises(storage.StorageError, match="/nonexistent/modelyard-root: does not exist"):
        curate_partition(PARTITION, settings_mod.get_settings())


_KILLED_PUBLISH = textwrap.dedent(
    """
    import os, signal, sys
    from modelyard import storage
    from modelyard.tasks.curation import publish_partition

    put, calls = storage._put, []

    def put_then_die(fs, local, remote):
        put(fs, local, remote)
        calls.append(remote)
        if len(calls) == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

    storage._put = put_then_die
    publish_partition(sys.argv[1])
    """
)


def test_publish_killed_mid_upload_leaves_no_version_and_rerun_completes(
    s3_settings, s3_env, bucket, tmp_path
):
    from modelyard.evaluation.suite import held_out_records
    from modelyard.tasks.catalog import InvalidDatasetVersion, latest_version, load_manifest

    settings = s3_settings
    _upload_raw(settings, tmp_path, n=60)
    curated = curate_partition(PARTITION, settings)
    validate_partition(curated["staging_dir"], settings)
    version = curated["version"]

    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_PUBLISH, curated["staging_dir"], "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    uploaded = _keys(s3_env, bucket, f"data/datasets/{version}/")
    assert len(uploaded) == 3 and f"data/datasets/{version}/manifest.json" not in uploaded
    # Nothing takes the partial prefix for a version.
    with pytest.raises(InvalidDatasetVersion, match="not published"):
        load_manifest(version, settings)
    with pytest.raises(FileNotFoundError, match="no dataset version is published"):
        latest_version(settings)
    assert held_out_records(settings) == ([], [])

    published = publish_partition(curated["staging_dir"], settings)
    assert published["new"] is True and published["version"] == version
    manifest = load_manifest(version, settings)
    assert manifest["counts"] == published["counts"]
    assert latest_version(settings) == version
    staged = storage.storage_path(settings, "staging", PARTITION)
    expected = {
        p.removeprefix(staged.path + "/")
        for p in staged.fs.find(staged.path)
        if p.removeprefix(staged.path + "/").split("/")[0]
        in ("train.jsonl", "eval.jsonl", "rejected.jsonl", "manifest.json", "index", "gx")
    }
    got = {
        k.removeprefix(f"data/datasets/{version}/")
        for k in _keys(s3_env, bucket, f"data/datasets/{version}/")
    }
    assert got == expected
    rows = json.loads(
        storage.storage_path(settings, "datasets", version, "manifest.json").read_text()
    )
    assert rows["gx"]["success"]


def test_credentials_from_an_airflow_aws_connection(
    s3_settings, s3_endpoint, bucket, monkeypatch: pytest.MonkeyPatch
):
    """With ``storage_aws_conn_id`` the root's key, secret and endpoint come from the Airflow
    connection alone (none in the environment), and reach the trainer's environment."""
    from modelyard import settings as settings_mod

    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MODELYARD_S3", json.dumps(connection))
    monkeypatch.setenv("MODELYARD_STORAGE_AWS_CONN_ID", "modelyard_s3")
    settings_mod.get_settings.cache_clear()
    storage._OPTIONS.clear()
    s3fs.S3FileSystem.clear_instance_cache()
    settings = settings_mod.get_settings()

    assert storage.require_root(settings).path == f"{bucket}/data"
    probe = storage.storage_path(settings, "probe.json")
    storage.write_json(probe, {"written": True})
    assert storage.read_json(probe) == {"written": True}
    keys = _keys(s3_endpoint, bucket, "data/")  # boto3 here gets the endpoint explicitly
    assert keys == ["data/probe.json"]
    assert storage.credential_env(settings) == {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_quarantine_pruning_on_s3_goes_by_object_age(s3_settings, s3_env, bucket):
    """``prune_older`` on an object store: an entry's age is its newest object's."""
    root = storage.storage_path(s3_settings, "quarantine")
    for version in ("ds-a", "ds-b"):
        storage.write_bytes(root / PARTITION / version / "rejected.jsonl", b"{}\n")
    assert storage.prune_older(root, days=1) == []
    assert len(_keys(s3_env, bucket, "data/quarantine/")) == 2
    removed = storage.prune_older(root, days=0)
    assert sorted(p.name for p in removed) == ["ds-a", "ds-b"]
    assert _keys(s3_env, bucket, "data/quarantine/") == []
