"""A real ``mlflow server`` process on a free loopback port, as the reference compose runs it."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelyard.airflow_env import VENV_BIN, stop_process_group
from modelyard.registry.connection import MLFLOW_SERVER_ENV
from tests.net import free_port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def mlflow_server(
    workdir: Path,
    backend_store_uri: str,
    timeout: float = 240.0,
    artifacts_destination: str | None = None,
) -> Iterator[str]:
    """Yields the server's ``http://`` URL once it answers; stops the whole process group.
    Artifacts are proxied to ``artifacts_destination`` (default a dir in ``workdir``)."""
    port = free_port()
    log = workdir / "mlflow-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(VENV_BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                backend_store_uri,
                "--artifacts-destination",
                artifacts_destination or str(workdir / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=os.environ | MLFLOW_SERVER_ENV,  # as docker/compose.yaml runs it
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start; see {log}:\n{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)
