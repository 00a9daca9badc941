"""finetune_model end to end in distributed mode, as a team runs it: PostgreSQL metadata DB,
CeleryExecutor on Redis, one worker for queue ``default`` and one for queue ``gpu``; storage
on S3 (``s3://`` root on a moto server on loopback); MLflow as an ``mlflow server`` process on
PostgreSQL with proxied S3 artifacts, which the library reaches by ``http://`` only.

One cluster start, one DAG run, two scenarios: the run succeeds with ``train`` on a gpu
worker and every other task on the default worker (Celery's own record of the worker, joined
to each task instance's Celery task id, both read from Postgres, and the workers' logs), and
its training process is SIGKILLed mid-run once a checkpoint is sealed in S3. The gpu worker
is then replaced by one whose local disk (``MODELYARD_HOME``) is empty: the retry must land
there, restore the newest checkpoint from S3, continue the same MLflow run from that step,
and the DAG run must succeed and register a model version with lineage.
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import date
from pathlib import Path

import boto3
import psutil
import psycopg2
import pytest

from modelyard.registry import tags
from modelyard.sampledata import write_partition
from modelyard.tasks.curation import curate_partition, publish_partition, validate_partition
from tests.orchestration.api import AirflowAPI
from tests.orchestration.distributed import distributed_airflow, redis_broker
from tests.pg import database
from tests.registry.mlflow_server import mlflow_server
from tests.storage.conftest import bucket, s3_endpoint, s3_env  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler, pytest.mark.postgres]
PARTITION = "2026-10-01"
RUN_ID = "distributed_s3_kill_resume"
SAVE_STEPS = 10
# Two checkpoints after the first: a kill that lands a checkpoint late still resumes mid-run.
MAX_STEPS = 30


@pytest.fixture
def cluster_settings(settings, bucket, postgres_server, tmp_path, monkeypatch):  # noqa: F811
    """Settings as a worker sees them: an s3:// root, and an MLflow server (Postgres backend
    store, artifacts proxied to the bucket) reached by its http:// URL."""
    import s3fs

    from modelyard import settings as settings_mod
    from modelyard import storage

    workdir = tmp_path / "mlflow"
    workdir.mkdir()
    with (
        database(*postgres_server) as mlflow_db,
        mlflow_server(workdir, mlflow_db, artifacts_destination=f"s3://{bucket}/mlflow") as url,
    ):
        monkeypatch.setenv("MODELYARD_STORAGE_ROOT", f"s3://{bucket}/data")
        monkeypatch.setenv("MODELYARD_MLFLOW_TRACKING_URI", url)
        # Alias moves from several machines exclude each other through the server's database.
        monkeypatch.setenv("MODELYARD_REGISTRY__LOCK_URL", mlflow_db)
        # The DAG's retry delay (1 min, backoff x2: 60-120 s here) capped, to keep test time:
        # 15 s still leave the test time to stop the lost worker (it takes ~5 s) before the
        # retry is queued, and the new worker starts meanwhile.
        monkeypatch.setenv("AIRFLOW__CORE__MAX_TASK_RETRY_DELAY", "15")
        # Experiments keep their artifacts behind the server: clients need no S3 access for them.
        monkeypatch.setenv("MODELYARD_MLFLOW_ARTIFACT_ROOT", "mlflow-artifacts:/modelyard")
        # The whole recipe: one nested field's variable would replace the tuned tiny-model
        # recipe with the trainer's bare defaults (max_seq_length 512 > the tiny model's 256).
        recipe = settings.training.recipe.model_dump(mode="json")
        recipe.update(eval_steps=SAVE_STEPS, save_steps=SAVE_STEPS)
        monkeypatch.setenv("MODELYARD_TRAINING__RECIPE", json.dumps(recipe))
        # 30 steps prove the orchestration, not the model: a bar every candidate clears, so the
        # run's `gate` task passes (the gate itself is tests/evaluation's subject).
        bar = {"rouge_l": {"threshold": 0, "min_absolute_change": -1}}
        monkeypatch.setenv("MODELYARD_GATE__THRESHOLDS", json.dumps(bar))
        # For the same reason 8 generated tokens per eval record instead of 48: generation is
        # most of `evaluate`'s time on CPU, and the scores are not this test's subject.
        monkeypatch.setenv("MODELYARD_GATE__MAX_NEW_TOKENS", "8")
        settings_mod.get_settings.cache_clear()
        storage._OPTIONS.clear()
        s3fs.S3FileSystem.clear_instance_cache()
        yield settings_mod.get_settings(), mlflow_db
        settings_mod.get_settings.cache_clear()


def _publish_dataset(settings, tmp_path: Path) -> str:
    from modelyard import storage

    local = write_partition(tmp_path / "raw", date.fromisoformat(PARTITION), n=120)
    storage.upload_dir(local.parent, storage.storage_path(settings, "raw", PARTITION))
    curated = curate_partition(PARTITION, settings)
    validate_partition(curated["staging_dir"], settings)
    return publish_partition(curated["staging_dir"], settings)["version"]


def _rows(url: str, query: str, *params) -> list[tuple]:
    with psycopg2.connect(url.replace("+psycopg2", "", 1)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _keys(endpoint: str, bucket: str, prefix: str) -> list[str]:  # noqa: F811
    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2")
    return [
        o["Key"]
        for page in pages.paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]


def _sealed(endpoint: str, bucket: str, run_prefix: str) -> list[int]:  # noqa: F811
    """Steps of the run's checkpoints sealed in S3, ascending."""
    prefix = f"{run_prefix}/checkpoints/"
    marker = re.compile(rf"{re.escape(prefix)}checkpoint-(\d+)/modelyard-sealed\.json")
    keys = _keys(endpoint, bucket, prefix)
    return sorted(int(m.group(1)) for k in keys if (m := marker.fullmatch(k)))


def _dag_parsed(api: AirflowAPI) -> bool:
    try:
        return bool(api.get("/api/v2/dags/finetune_model"))
    except OSError:  # 404 until the DAG processor has serialized it
        return False


def _finished(api: AirflowAPI, run_id: str) -> dict | None:
    run = api.get(f"/api/v2/dags/finetune_model/dagRuns/{run_id}")
    return run if run["state"] in ("success", "failed") else None


def _train_state(api: AirflowAPI) -> str | None:
    ti = api.get(f"/api/v2/dags/finetune_model/dagRuns/{RUN_ID}/taskInstances/train")
    return ti["state"]


def _trainer_process() -> psutil.Process | None:
    """The running ``python -m trainer`` of this DAG run (a child of the gpu worker)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "trainer" in cmdline and any(RUN_ID in part for part in cmdline):
            return proc
    return None


def test_finetune_on_celery_with_s3_and_mlflow_server_survives_losing_the_gpu_worker(
    cluster_settings,
    postgres_url,
    s3_env,  # noqa: F811
    bucket,  # noqa: F811
    tmp_path,
):
    from mlflow import MlflowClient

    settings, mlflow_db = cluster_settings
    version = _publish_dataset(settings, tmp_path)
    empty_home = tmp_path / "gpu2-home"
    run_prefix = f"data/runs/{RUN_ID}"

    with (
        redis_broker(tmp_path) as broker,
        distributed_airflow(settings, postgres_url, broker, tmp_path / "logs") as cluster,
    ):
        api = AirflowAPI(cluster.base_url, cluster.airflow_home)
        api.wait_for(lambda: _dag_parsed(api), "finetune_model to be parsed", timeout=120)
        api.patch("/api/v2/dags/finetune_model", {"is_paused": False})
        api.post(
            "/api/v2/dags/finetune_model/dagRuns",
            {
                "dag_run_id": RUN_ID,
                "logical_date": None,
                "conf": {"max_steps": MAX_STEPS, "dataset_version": version},
            },
        )
        # Kill the training process as soon as its first checkpoint is sealed in S3: found
        # before the seal, so the kill follows it within one poll (not a later checkpoint).
        trainer = api.wait_for(_trainer_process, "the trainer process", 300, 0.2)
        api.wait_for(lambda: _sealed(s3_env, bucket, run_prefix), "a sealed checkpoint", 300, 0.2)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(30)
        # A checkpoint is sealed last, so the dead trainer's sealed set is final.
        sealed_at_kill = _sealed(s3_env, bucket, run_prefix)
        mirrored_run = _keys(s3_env, bucket, f"{run_prefix}/mlflow_run.json")
        first_home = Path(settings.home) / "runs" / RUN_ID
        assert (first_home / "checkpoints").is_dir()
        assert sealed_at_kill[-1] < MAX_STEPS, f"killed too late to resume: {sealed_at_kill}"
        # Within the 15 s retry delay: the lost worker must not take the retry.
        api.wait_for(lambda: _train_state(api) == "up_for_retry", "train to fail", 60, 0.5)
        # The gpu machine is gone; a new one, with nothing on its local disk, takes the queue.
        cluster.stop("worker-gpu")
        cluster.start_worker("gpu2", "gpu", 1, MODELYARD_HOME=str(empty_home))
        killed_at = time.monotonic()
        run = api.wait_for(lambda: _finished(api, RUN_ID), "the DAG run to finish", timeout=600)
        train_xcom = api.get(
            f"/api/v2/dags/finetune_model/dagRuns/{RUN_ID}/taskInstances/train/xcomEntries/"
            "return_value"
        )["value"]
        placement = _rows(
            postgres_url,
            "SELECT ti.task_id, ti.state, ti.queue, ti.pool, ti.hostname, ti.external_executor_id,"
            " m.worker, ti.try_number FROM task_instance ti"
            " LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id"
            " WHERE ti.dag_id = 'finetune_model' AND ti.run_id = %s",
            RUN_ID,
        )
        worker_logs = {n: cluster.log(f"worker-{n}") for n in ("default", "gpu", "gpu2")}
    print(f"retry finished {time.monotonic() - killed_at:.0f}s after the kill")

    assert run["state"] == "success", placement
    by_task = {row[0]: row[1:] for row in placement}
    assert set(by_task) == {"prepare", "not_trained_yet", "train", "evaluate", "register", "gate"}
    for task_id, (state, queue, pool, hostname, celery_id, worker, tries) in by_task.items():
        expected = "gpu2" if task_id == "train" else "default"
        assert state == "success" and hostname, (task_id, state, hostname)
        assert queue == ("gpu" if task_id == "train" else "default"), (task_id, queue)
        assert pool == ("gpu" if task_id == "train" else "default_pool"), (task_id, pool)
        assert worker and worker.startswith(f"{expected}@"), (task_id, worker)
        assert tries == (2 if task_id == "train" else 1), (task_id, tries)
        # The worker's own log shows it executed this task's Celery message; no other did.
        assert f"[{celery_id}] Executing workload" in worker_logs[expected], task_id
        for other in set(worker_logs) - {expected}:
            assert celery_id not in worker_logs[other], (task_id, other)
    assert "Executing workload" in worker_logs["gpu"]  # the first try ran on the lost worker

    # The retry restored the checkpoint from S3 onto an empty disk and continued from it.
    if isinstance(train_xcom, str):
        train_xcom = json.loads(train_xcom)
    resumed = f"checkpoint-{sealed_at_kill[-1]}"
    assert train_xcom["resumed_from"] == resumed
    assert train_xcom["global_step"] == MAX_STEPS
    assert train_xcom["adapter_dir"].startswith(str(empty_home))
    assert (empty_home / "runs" / RUN_ID / "checkpoints" / resumed).is_dir()

    # Same MLflow run, its step count continuing past the checkpoint; through the server only.
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    assert settings.tracking_uri.startswith("http://")
    assert mirrored_run, "the run id was mirrored before the kill"
    mlflow_run = client.get_run(train_xcom["mlflow_run_id"])
    runs = _rows(mlflow_db, "SELECT run_uuid FROM runs WHERE name = %s", RUN_ID)
    assert runs == [(mlflow_run.info.run_id,)], "one MLflow run across both tries"
    steps = sorted(
        {m.step for m in client.get_metric_history(mlflow_run.info.run_id, "train_loss")}
    )
    assert steps[0] < sealed_at_kill[-1] < steps[-1] <= MAX_STEPS, steps
    assert mlflow_run.info.artifact_uri.startswith("mlflow-artifacts:/"), mlflow_run.info
    artifacts = _keys(s3_env, bucket, "mlflow/")
    assert any(k.endswith("gate/report.json") for k in artifacts), artifacts[:20]
    assert any("/adapter/" in k for k in artifacts), artifacts[:20]

    # Storage is the bucket: dataset, staging, suite and run mirror; no local data root.
    keys = set(_keys(s3_env, bucket, "data/"))
    assert f"data/datasets/{version}/manifest.json" in keys
    assert f"{run_prefix}/result.json" in keys
    assert "data/eval-suites/CURRENT" in keys
    assert not (Path(settings.home) / "data").exists()

    # The candidate is registered with lineage in the Postgres-backed registry behind the server.
    [model_version] = client.search_model_versions(f"name='{settings.registered_model}'")
    lineage = model_version.tags
    for tag in (
        tags.DATASET_VERSION,
        tags.DATASET_HASH,
        tags.BASE_MODEL,
        tags.CONFIG_HASH,
        tags.SUITE_VERSION,
        tags.MLFLOW_RUN_ID,
        tags.GATE_DECISION,
    ):
        assert lineage.get(tag), f"missing lineage tag {tag}"
    assert lineage[tags.DATASET_VERSION] == version
    assert lineage[tags.DAG_ID] == "finetune_model"
    assert lineage[tags.DAG_RUN_ID] == RUN_ID
    assert lineage[tags.MLFLOW_RUN_ID] == mlflow_run.info.run_id
    assert _rows(mlflow_db, "SELECT name, version FROM model_versions") == [
        (settings.registered_model, int(model_version.version))
    ]
    # The Airflow metadata is in Postgres (no SQLite file was created on the side).
    assert not (cluster.airflow_home / "airflow.db").exists()
