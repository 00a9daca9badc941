"""Airflow in distributed mode, as a team runs it: PostgreSQL metadata DB, CeleryExecutor on a
Redis broker, and two Celery workers (queue ``default``; queue ``gpu`` with one slot).

Every component is its own process group (API server, scheduler, DAG processor, workers) with
its log in ``log_dir``, configured only through environment variables on top of
``airflow_env(settings)``, so the DAGs run exactly as they do on the embedded default.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelyard.airflow_env import VENV_BIN, airflow_env, stop_process_group
from modelyard.settings import Settings
from tests.net import free_port

AIRFLOW = str(VENV_BIN / "airflow")
# (name, queues, concurrency): one worker per queue, named so each task's worker is provable.
WORKERS = [("default", "default", 2), ("gpu", "gpu", 1)]


def _redis_answers(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@contextmanager
def redis_broker(workdir: Path) -> Iterator[str]:
    """URL of a Redis server: the one on 127.0.0.1:6379, else a throwaway ``redis-server``."""
    if _redis_answers(6379):
        yield "redis://127.0.0.1:6379/0"
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("Redis is neither running on 127.0.0.1:6379 nor installed")
    port = free_port()
    log = (workdir / "redis.log").open("wb")
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _redis_answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {workdir / 'redis.log'}")
            time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process_group(proc)
        log.close()


@dataclass
class Cluster:
    base_url: str
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    stack: ExitStack | None = None

    @property
    def airflow_home(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"])

    def cli(self, args: list[str]) -> str:
        """Run one ``airflow`` command against the cluster's metadata DB; returns stdout."""
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env, text=True, capture_output=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def log(self, component: str) -> str:
        return (self.log_dir / f"{component}.log").read_text(errors="replace")

    def start_worker(self, name: str, queues: str, concurrency: int, **env: str) -> None:
        """Start one more Celery worker ``<name>@host``; ``env`` overrides its environment
        (e.g. another ``MODELYARD_HOME``: a worker with an empty local disk)."""
        assert self.stack is not None
        argv = [
            "celery",
            "worker",
            "--queues",
            queues,
            "--concurrency",
            str(concurrency),
            "--celery-hostname",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        component = f"worker-{name}"
        self.procs[component] = self.stack.enter_context(_component(self, component, argv, env))

    def stop(self, component: str) -> None:
        """Stop one component (its whole process group) now."""
        stop_process_group(self.procs.pop(component))


def cluster_env(settings: Settings, sql_alchemy_conn: str, broker_url: str, port: int) -> dict:
    """``airflow_env(settings)`` switched to PostgreSQL + Celery, MLflow from ``settings``."""
    base_url = f"http://127.0.0.1:{port}"
    db_url = sql_alchemy_conn.replace("postgresql://", "postgresql+psycopg2://", 1)
    env = airflow_env(settings)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
            # Celery records which worker ran each task (celery_taskmeta.worker) next to the result.
            "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"result_extended": True}),
            # Queues "default"/"gpu" are fixed by the DAGs: a per-cluster key prefix keeps two
            # clusters sharing one Redis (e.g. parallel test runs) from taking each other's tasks.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": (
                f"{secrets.token_hex(4)}:"
            ),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            # Each process would otherwise generate its own secret and reject the others' tokens.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "MODELYARD_MLFLOW_TRACKING_URI": settings.tracking_uri,
            "MODELYARD_MLFLOW_ARTIFACT_ROOT": settings.artifact_root,
            "MODELYARD_STORAGE_ROOT": settings.storage,
        }
    )
    if settings.base_model:
        env["MODELYARD_BASE_MODEL"] = settings.base_model
    return env


@contextmanager
def distributed_airflow(
    settings: Settings,
    sql_alchemy_conn: str,
    broker_url: str,
    log_dir: Path,
    timeout: float = 240.0,
) -> Iterator[Cluster]:
    """Migrate the Postgres metadata DB, start every component, yield once the scheduler and
    DAG processor report healthy; stop all process groups on exit."""
    port = free_port()
    cluster = Cluster(
        f"http://127.0.0.1:{port}",
        cluster_env(settings, sql_alchemy_conn, broker_url, port),
        log_dir,
    )
    cluster.airflow_home.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    cluster.cli(["db", "migrate"])
    cluster.cli(["pools", "set", "gpu", "1", "GPU slots for training tasks"])

    commands = {
        "api-server": ["api-server"],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
    }
    with ExitStack() as stack:
        cluster.stack = stack
        for name, argv in commands.items():
            cluster.procs[name] = stack.enter_context(_component(cluster, name, argv))
        for name, queues, concurrency in WORKERS:
            cluster.start_worker(name, queues, concurrency)
        _wait_healthy(cluster, dict(cluster.procs), timeout)
        yield cluster


@contextmanager
def _component(
    cluster: Cluster, name: str, argv: list[str], overrides: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    env = {**cluster.env, **(overrides or {})}
    if name.startswith("worker-"):  # each worker serves its task logs on a port of its own
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
    with (cluster.log_dir / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [AIRFLOW, *argv], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop_process_group(proc)  # a no-op for one Cluster.stop already stopped


def _wait_healthy(cluster: Cluster, procs: dict[str, subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}:\n{cluster.log(name)[-3000:]}"
                )
        try:
            with urllib.request.urlopen(
                f"{cluster.base_url}/api/v2/monitor/health", timeout=5
            ) as resp:
                health = json.load(resp)
            if all(
                health.get(part, {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "dag_processor")
            ):
                return
        except (OSError, ValueError):
            pass
        time.sleep(2)
    raise TimeoutError(
        f"Airflow did not become healthy within {timeout:.0f}s; see {cluster.log_dir}"
    )
