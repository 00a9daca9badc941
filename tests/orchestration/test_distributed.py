"""finetune_model end to end in distributed mode: PostgreSQL metadata DB, CeleryExecutor on
Redis, one worker for queue ``default`` and one for queue ``gpu``, MLflow on PostgreSQL.

The dataset is published beforehand by the real curation tasks. The run must succeed with
``train`` executed by the gpu worker and every other task by the default worker (Celery's own
record of the worker, joined to each task instance's Celery task id, both read from Postgres,
and the workers' logs), and leave a model version with lineage in the Postgres registry.
"""

from __future__ import annotations

from datetime import date

import psycopg2
import pytest

from modelyard.registry import tags
from modelyard.sampledata import write_partition
from modelyard.tasks.curation import curate_partition, publish_partition, validate_partition
from tests.orchestration.api import AirflowAPI
from tests.orchestration.distributed import distributed_airflow, redis_broker
from tests.pg import database

pytestmark = [pytest.mark.airflow, pytest.mark.postgres]
PARTITION = "2026-10-01"


@pytest.fixture
def pg_settings(settings, postgres_server, tmp_path, monkeypatch: pytest.MonkeyPatch):
    """The test's settings with the MLflow tracking store and registry in a Postgres database."""
    from modelyard import settings as settings_mod

    with database(*postgres_server) as mlflow_db:
        monkeypatch.setenv("MODELYARD_MLFLOW_TRACKING_URI", mlflow_db)
        monkeypatch.setenv("MODELYARD_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlflow-artifacts"))
        settings_mod.get_settings.cache_clear()
        yield settings_mod.get_settings()


def _publish_dataset(settings) -> str:
    write_partition(settings.storage_path / "raw", date.fromisoformat(PARTITION), n=120)
    curated = curate_partition(PARTITION, settings)
    validate_partition(curated["staging_dir"], settings)
    return publish_partition(curated["staging_dir"], settings)["version"]


def _rows(url: str, query: str, *params) -> list[tuple]:
    with psycopg2.connect(url.replace("+psycopg2", "", 1)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _dag_parsed(api: AirflowAPI) -> bool:
    try:
        return bool(api.get("/api/v2/dags/finetune_model"))
    except OSError:  # 404 until the DAG processor has serialized it
        return False


def _finished(api: AirflowAPI, run_id: str) -> dict | None:
    run = api.get(f"/api/v2/dags/finetune_model/dagRuns/{run_id}")
    return run if run["state"] in ("success", "failed") else None


def test_finetune_runs_on_celery_workers_with_postgres(pg_settings, postgres_url, tmp_path):
    from mlflow import MlflowClient

    settings = pg_settings
    version = _publish_dataset(settings)

    with (
        redis_broker(tmp_path) as broker,
        distributed_airflow(settings, postgres_url, broker, tmp_path / "logs") as cluster,
    ):
        api = AirflowAPI(cluster.base_url, cluster.airflow_home)
        api.wait_for(lambda: _dag_parsed(api), "finetune_model to be parsed", timeout=120)
        api.patch("/api/v2/dags/finetune_model", {"is_paused": False})
        run_id = api.post(
            "/api/v2/dags/finetune_model/dagRuns",
            {
                "logical_date": None,
                "conf": {"max_steps": 20, "dataset_version": version},
            },
        )["dag_run_id"]
        run = api.wait_for(lambda: _finished(api, run_id), "the DAG run to finish", timeout=300)
        placement = _rows(
            postgres_url,
            "SELECT ti.task_id, ti.state, ti.queue, ti.pool, ti.hostname, ti.external_executor_id,"
            " m.worker FROM task_instance ti"
            " LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id"
            " WHERE ti.dag_id = 'finetune_model' AND ti.run_id = %s",
            run_id,
        )
        worker_logs = {name: cluster.log(f"worker-{name}") for name in ("default", "gpu")}

    assert run["state"] == "success", placement
    by_task = {row[0]: row[1:] for row in placement}
    assert set(by_task) == {"prepare", "train", "evaluate", "register"}
    for task_id, (state, queue, pool, hostname, celery_id, worker) in by_task.items():
        expected = "gpu" if task_id == "train" else "default"
        other = "default" if expected == "gpu" else "gpu"
        assert state == "success" and hostname, (task_id, state, hostname)
        assert queue == expected, (task_id, queue)
        assert pool == ("gpu" if task_id == "train" else "default_pool"), (task_id, pool)
        assert worker and worker.startswith(f"{expected}@"), (task_id, worker)
        # The worker's own log shows it executed this task's Celery message; the other's does not.
        assert f"[{celery_id}] Executing workload" in worker_logs[expected], task_id
        assert celery_id not in worker_logs[other], task_id

    # The Airflow metadata is in Postgres (no SQLite file was created on the side).
    assert _rows(postgres_url, "SELECT state FROM dag_run WHERE run_id = %s", run_id) == [
        ("success",)
    ]
    assert not (cluster.airflow_home / "airflow.db").exists()

    # The candidate is registered with lineage in the Postgres-backed MLflow registry.
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
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
    assert lineage[tags.DAG_RUN_ID] == run_id
    mlflow_db = settings.tracking_uri.replace("+psycopg2", "")
    assert _rows(mlflow_db, "SELECT name, version FROM model_versions") == [
        (settings.registered_model, int(model_version.version))
    ]
