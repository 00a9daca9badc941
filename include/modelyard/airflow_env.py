"""The embedded Airflow: SQLite metadata DB under ``<home>/airflow``, this repo's DAG bundle.

Used by ``make airflow``, ``modelyard demo`` and the Airflow tests, so all three look at the
same home. Everything is environment variables, Airflow's own configuration mechanism.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def init_airflow(settings: Settings) -> None:
    """Migrate the metadata DB and create the ``gpu`` pool (one slot: one GPU)."""
    (Path(settings.home) / "airflow").mkdir(parents=True, exist_ok=True)
    airflow(["db", "migrate"], settings, capture=True)
    airflow(["pools", "set", "gpu", "1", "GPU slots for training tasks"], settings, capture=True)


@contextmanager
def running_airflow(
    settings: Settings, port: int = 8080, timeout: float = 180.0, log_file: Path | None = None
) -> Iterator[str]:
    """Run ``airflow standalone`` (API server, scheduler, DAG processor, triggerer) on the
    embedded home until the context exits; yields the API base URL once the scheduler is up."""
    init_airflow(settings)
    base_url = f"http://127.0.0.1:{port}"
    env = airflow_env(settings)
    env.update(
        {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        }
    )
    log_file = log_file or Path(settings.home) / "airflow" / "standalone.log"
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(base_url, proc, timeout, log_file)
        yield base_url
    finally:
        stop_process_group(proc)


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
        try:
            with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=5) as resp:
                health = json.load(resp)
            if health.get("scheduler", {}).get("status") == "healthy":
                return
        except (OSError, ValueError):
            pass
        time.sleep(2)
    raise TimeoutError(f"Airflow did not become healthy within {timeout:.0f}s; see {log_file}")


def _exec(argv: list[str], env: dict[str, str]) -> None:
    os.execve(str(VENV_BIN / argv[0]), argv, env)


def main(argv: list[str]) -> None:
    """``make airflow`` / ``make mlflow-ui``: serve the UIs on the embedded home."""
    from modelyard.settings import get_settings

    settings = get_settings()
    if argv == ["standalone"]:
        init_airflow(settings)
        passwords = Path(settings.home) / "airflow" / "simple_auth_manager_passwords.json.generated"
        print(
            f"Airflow UI: http://localhost:8080 (user admin; password in {passwords})", flush=True
        )
        _exec(["airflow", "standalone"], airflow_env(settings))
    elif argv == ["mlflow-ui"]:
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
            os.environ.copy(),
        )
    else:
        raise SystemExit("usage: python -m modelyard.airflow_env standalone|mlflow-ui")


if __name__ == "__main__":
    main(sys.argv[1:])
