"""Real ``modelyard serve`` processes on loopback, registered versions, concurrent clients.

Versions are registered the way ``finetune_model``'s register task does it
(``register_candidate``), from adapters the real trainer made; the gate report handed to it says
"passed" because the gate is what tests/evaluation covers, while here only what the registry
stores and the aliases matter.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from evaluation.helpers import train_result

from modelyard.airflow_env import VENV_BIN
from modelyard.registry import register_candidate
from modelyard.settings import Settings
from tests.net import free_port

MODEL = "modelyard-assistant"
# One thread per child: the gateways share two busy cores with the clients and other suites.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
SPLIT = {"role": "user", "content": "Nadia is a pilot from Oslo."}


def register(settings: Settings, adapter: Path, name: str) -> str:
    """Register ``adapter`` as a new version (``staging``, as a passing candidate); its number."""
    result = train_result(settings, adapter, Path(settings.default_base_model), name)
    report = {
        "gate": {"passed": True, "failed": [], "checks": []},
        "candidate": {"metrics": {}},
        "suite_version": "suite-serving-tests",
        "incumbent": {},
        "artifacts": {},
    }
    manifest = {"version": "ds-serving-tests", "content_hash": ""}
    ctx = {"dag_id": "finetune_model", "run_id": name, "actor": "tests"}
    return register_candidate(result, report, manifest, ctx, settings)["version"]


def broken_adapter(good: Path, out: Path) -> Path:
    """A copy of an adapter whose weights file is garbage: registrable, never loadable."""
    shutil.copytree(good, out)
    (out / "adapter_model.safetensors").write_bytes(b"\x00not safetensors" * 64)
    return out


def set_aliases(settings: Settings, **aliases: str | None) -> None:
    """Point (or, with None, remove) aliases directly: test setup, not a promotion."""
    from modelyard.registry.artifacts import client_for

    client = client_for(settings)
    for alias, version in aliases.items():
        if version is None:
            try:
                client.delete_registered_model_alias(MODEL, alias)
            except Exception:  # noqa: BLE001 - already absent
                pass
        else:
            client.set_registered_model_alias(MODEL, alias, version)


class ServerProcess:
    """A server subprocess on a loopback port, its output in a file."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.log = log
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self, cmd: list[str], env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env={**os.environ, **CHILD_ENV, **env}, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not get there in {timeout} s:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class GatewayProcess(ServerProcess):
    """``modelyard serve`` as an operator starts it, with settings from the environment."""

    def __init__(
        self,
        home: Path,
        base_model: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(home / "gateway.log", port)
        self.home = home
        self.env = {
            "MODELYARD_HOME": str(home),
            "MODELYARD_BASE_MODEL": str(base_model),
            "MODELYARD_SERVING__POLL_SECONDS": "0.5",
            "MODELYARD_SERVING__LOG_FLUSH_SECONDS": "0.1",
            **(env or {}),
        }

    def start(self) -> GatewayProcess:
        self.launch([str(VENV_BIN / "modelyard"), "serve", "--port", str(self.port)], self.env)
        self.wait_until(lambda: httpx.get(f"{self.url}/v1/models").status_code == 200, 120)
        return self

    def health(self) -> dict:
        return httpx.get(f"{self.url}/healthz").json()

    def wait_routes(self, production: str | None, canary: str | None, timeout: float = 60) -> None:
        want = {"production": production, "canary": canary}
        self.wait_until(lambda: {k: self.health()[k] for k in want} == want, timeout)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text


def chat(
    client: httpx.Client,
    url: str,
    user: str | None,
    content: str = SPLIT["content"],
    **extra,
) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    if user is not None:
        body["user"] = user
    return client.post(f"{url}/v1/chat/completions", json=body | extra, timeout=60)


@dataclass
class Result:
    sent: float  # time.time() when the request left
    at: float  # when the response arrived
    status: int
    alias: str | None
    version: str | None
    response_id: str | None


class Traffic:
    """Client threads sending requests until stopped: what users do while aliases move."""

    def __init__(self, url: str, clients: int = 3, max_tokens: int = 4) -> None:
        self.url = url
        self.results: list[Result] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(i, max_tokens), daemon=True)
            for i in range(clients)
        ]

    def _client(self, index: int, max_tokens: int) -> None:
        n = 0
        with httpx.Client() as client:
            while not self._stop.is_set():
                n += 1
                sent = time.time()
                try:
                    resp = chat(client, self.url, f"user-{index}-{n}", max_tokens=max_tokens)
                    body = resp.json() if resp.status_code == 200 else {}
                    result = Result(
                        sent,
                        time.time(),
                        resp.status_code,
                        resp.headers.get("x-modelyard-alias"),
                        resp.headers.get("x-modelyard-version"),
                        body.get("id"),
                    )
                except httpx.HTTPError:
                    if self._stop.is_set():
                        return
                    result = Result(sent, time.time(), 0, None, None, None)
                with self._lock:
                    self.results.append(result)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.snapshot())
        while len(self.snapshot()) < start + count:
            assert time.monotonic() < deadline, "traffic stalled"
            time.sleep(0.05)
