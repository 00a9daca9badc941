"""The embedded Airflow: SQLite metadata DB under ``<home>/airflow``, this repo's DAG bundle.

Used by ``make airflow``, ``modelyard airflow``, ``modelyard backfill``, ``modelyard demo`` and
the Airflow tests, so all of them look at the same home. Everything is environment variables,
Airflow's own configuration mechanism. An Airflow started here leaves a record
(``<home>/airflow/api_server.json``: its URL and pid) so commands that need a running scheduler
find the one serving *this* home, not whatever listens on port 8080.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from modelyard.settings import PROJECT_ROOT, Settings

#: Where this interpreter's console scripts (airflow, mlflow) are: the venv's bin.
VENV_BIN = Path(sys.executable).parent


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an Airflow process on the embedded default (overridable by the caller)."""
    env = dict(os.environ if base is None else base)
    airflow_home = Path(settings.home) / "airflow"
    defaults = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor forks this many workers up front; 32 idle ones swamp a small box.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        # The DAG processor keeps Airflow's 30 s re-parse (~3% of a core here): a parse is also
        # what frees a max_active_runs=1 DAG whose run was marked failed through the API or UI
        # (DagModel.exceeds_max_non_backfill), so a longer interval delays its next run.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "MODELYARD_HOME": str(settings.home),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    # `airflow standalone` and the task runner spawn `airflow` by name: the venv must be on PATH.
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    return env


def airflow(
    args: list[str], settings: Settings, check: bool = True, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run one ``airflow`` CLI command against the embedded home."""
    return subprocess.run(
        [str(VENV_BIN / "airflow"), *args],
        env=airflow_env(settings),
        check=check,
        text=True,
        capture_output=capture,
    )


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it), for a temporary Airflow."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _record_file(settings: Settings) -> Path:
    return Path(settings.home) / "airflow" / "api_server.json"


def _record_api_server(settings: Settings, url: str, pid: int) -> None:
    _record_file(settings).write_text(json.dumps({"url": url, "pid": pid}))


def _forget_api_server(settings: Settings, pid: int) -> None:
    """Remove the record if it still names ``pid`` (another Airflow may have replaced it)."""
    record = _record_file(settings)
    try:
        if json.loads(record.read_text()).get("pid") == pid:
            record.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def scheduler_healthy(base_url: str) -> bool:
    """Whether the API server at ``base_url`` answers and reports a healthy scheduler."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=5) as resp:
            health = json.load(resp)
    except (OSError, ValueError):
        return False
    return health.get("scheduler", {}).get("status") == "healthy"


def find_running_airflow(settings: Settings) -> str | None:
    """Base URL of the Airflow started on this home (``make airflow``, ``running_airflow``)
    while its process lives and its scheduler is healthy; ``None`` otherwise."""
    try:
        record = json.loads(_record_file(settings).read_text())
        url, pid = str(record["url"]), int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if _alive(pid) and scheduler_healthy(url) else None


def init_airflow(settings: Settings) -> None:
    """Migrate the metadata DB and create the ``gpu`` pool (one slot: one GPU), in one
    process (``airflow db migrate`` + ``airflow pools set`` were two, each paying Airflow's
    start-up). An Airflow started here does the same in its own process."""
    (Path(settings.home) / "airflow").mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "modelyard.airflow_env", "init-db"],
        env=airflow_env(settings),
        text=True,
        capture_output=True,
    )
    if done.returncode:
        raise RuntimeError(f"Airflow DB init failed ({done.returncode}): {done.stderr[-2000:]}")


def _init_db() -> None:
    """In an Airflow environment: what ``airflow db migrate`` does (create or upgrade to
    head; ``airflow standalone`` runs the same), then the ``gpu`` pool as ``pools set`` would,
    unless it exists."""
    from airflow.models.pool import Pool
    from airflow.utils.db import initdb

    initdb()
    if Pool.get_pool("gpu") is None:  # created once: a user's `pools set gpu N` stays
        Pool.create_or_update_pool(
            "gpu", slots=1, description="GPU slots for training tasks", include_deferred=False
        )


@contextmanager
def running_airflow(
    settings: Settings, port: int = 8080, timeout: float = 180.0, log_file: Path | None = None
) -> Iterator[str]:
    """Run ``airflow standalone`` (API server, scheduler, DAG processor, triggerer) on the
    embedded home until the context exits; yields the API base URL once the scheduler is up.
    Its process migrates the DB and creates the ``gpu`` pool first (:func:`serve_standalone`)."""
    (Path(settings.home) / "airflow").mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{port}"
    env = airflow_env(settings)
    env.update(
        {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        }
    )
    # The scheduler's and triggerer's log servers default to fixed ports (8793, 8794): a second
    # Airflow on this machine (another home, the tests) would lose them to the first.
    for key in ("WORKER_LOG_SERVER_PORT", "TRIGGER_LOG_SERVER_PORT"):
        env.setdefault(f"AIRFLOW__LOGGING__{key}", str(free_port()))
    log_file = log_file or Path(settings.home) / "airflow" / "standalone.log"
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.airflow_env", "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _record_api_server(settings, base_url, proc.pid)
    try:
        _wait_healthy(base_url, proc, timeout, log_file)
        yield base_url
    finally:
        stop_process_group(proc)
        _forget_api_server(settings, proc.pid)


def stop_process_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the process group an Airflow component leads, SIGKILL it after ``grace``.

    The whole group, even when the leader already exited: its children (a scheduler's
    executor workers, say) would otherwise outlive the test or the UI session.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers that ignored SIGTERM
    except ProcessLookupError:
        pass
    proc.wait()


def _wait_healthy(base_url: str, proc: subprocess.Popen, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with {proc.returncode}; see {log_file}")
        if scheduler_healthy(base_url):
            return
        time.sleep(0.5)  # a refused connection costs nothing; every second here is waited
    raise TimeoutError(f"Airflow did not become healthy within {timeout:.0f}s; see {log_file}")


def _exec(argv: list[str], env: dict[str, str]) -> NoReturn:
    os.execve(str(VENV_BIN / argv[0]), argv, env)


def serve_standalone(settings: Settings) -> NoReturn:
    """``make airflow`` and :func:`running_airflow`: this process migrates the DB, creates the
    ``gpu`` pool and becomes ``airflow standalone`` on the embedded home (same pid, so the
    record written first names the running Airflow).

    One process: standalone migrates the DB itself, so a separate ``init-db`` process paid
    Airflow's imports a second time (~5 CPU-s here) before every start.
    """
    env = airflow_env(settings)
    url = env.get("AIRFLOW__API__BASE_URL") or (
        f"http://localhost:{env.get('AIRFLOW__API__PORT', '8080')}"
    )
    # Tasks report to the API server's execution API; Airflow's default assumes port 8080.
    env.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"{url}/execution/")
    passwords = Path(settings.home) / "airflow" / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI: {url} (user admin; password in {passwords})", flush=True)
    _record_api_server(settings, url, os.getpid())
    os.environ.update(env)  # before Airflow is imported: it reads its configuration once
    _init_db()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "standalone"]
    airflow_main()
    sys.exit(0)


def exec_airflow(settings: Settings, args: list[str]) -> NoReturn:
    """``modelyard airflow ARGS``: the Airflow CLI on the embedded environment; its exit code
    is this process's (exec). ``standalone`` is ``make airflow``."""
    if args == ["standalone"]:
        serve_standalone(settings)
    env = airflow_env(settings)
    embedded_db = Path(settings.home) / "airflow" / "airflow.db"
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(str(embedded_db)):
        if not embedded_db.exists():  # a fresh home: the same first step as `make airflow`
            init_airflow(settings)
    _exec(["airflow", *args], env)


def main(argv: list[str]) -> None:
    """``make airflow`` / ``make mlflow-ui``: serve the UIs on the embedded home; ``init-db``
    is :func:`init_airflow`'s own process."""
    from modelyard.settings import get_settings

    settings = get_settings()
    if argv == ["standalone"]:
        serve_standalone(settings)
    elif argv == ["init-db"]:
        _init_db()
    elif argv == ["mlflow-ui"]:
        from modelyard.registry.connection import MLFLOW_SERVER_ENV

        Path(settings.artifact_root).mkdir(parents=True, exist_ok=True)
        _exec(
            [
                "mlflow",
                "ui",
                "--backend-store-uri",
                settings.tracking_uri,
                "--default-artifact-root",
                settings.artifact_root,
                "--port",
                "5000",
            ],
            os.environ | MLFLOW_SERVER_ENV,
        )
    else:
        raise SystemExit("usage: python -m modelyard.airflow_env standalone|init-db|mlflow-ui")


if __name__ == "__main__":
    main(sys.argv[1:])
