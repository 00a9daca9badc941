"""Airflow-side launcher of the trainer: build its config, run it as a subprocess, get its result.

The trainer runs in its own environment (``settings.training.python``; CUDA torch and Unsloth on
GPU workers), so the two sides share nothing but a config file and ``result.json``. The run dir is
derived from the run name, so an Airflow retry of the same run resumes from the last checkpoint.
This module never imports Airflow: its output goes through ``logging``, which Airflow captures.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelyard.settings import Settings

log = logging.getLogger(__name__)

TAIL_LINES = 30
TERMINATE_GRACE_SECONDS = 30


def _is_remote(path: str) -> bool:
    return "://" in path


def build_trainer_config(
    params: dict[str, Any], dataset_dir: str, run_name: str, settings: Settings
) -> dict[str, Any]:
    """The trainer config of one DAG run; ``params`` are the DAG Params (missing ones: settings).

    With remote storage (s3://...) the trainer works in a local run dir under ``home`` and
    mirrors checkpoints and results to ``<storage>/runs/<run_name>``.
    """
    t = settings.training
    run_dir = f"{settings.storage.rstrip('/')}/runs/{run_name}"
    output_dir, mirror_dir = run_dir, None
    if _is_remote(run_dir):
        output_dir, mirror_dir = str(settings.home / "runs" / run_name), run_dir
    manifest = Path(dataset_dir) / "manifest.json"
    data_version = json.loads(manifest.read_text())["version"] if manifest.is_file() else None
    lora_r = int(params.get("lora_r") or t.lora_r)
    return {
        "backend": params.get("backend") or t.backend,
        "base_model": params.get("base_model") or settings.default_base_model,
        # No eval_file: the trainer validates on a slice of train. The held-out split belongs to
        # the eval suite and never steers training (not even early stopping).
        "train_file": str(Path(dataset_dir) / "train.jsonl"),
        "output_dir": output_dir,
        "mirror_dir": mirror_dir,
        "data_version": data_version,
        "max_seq_length": t.max_seq_length,
        "lora": {"r": lora_r, "alpha": 2 * lora_r},
        "learning_rate": float(params.get("learning_rate") or t.learning_rate),
        "max_steps": int(params.get("max_steps") or t.max_steps),
        "eval_steps": t.eval_steps,
        "save_steps": t.save_steps,
        "early_stopping_patience": t.early_stopping_patience,
        "mlflow": {
            "tracking_uri": settings.tracking_uri,
            "experiment": t.experiment,
            "run_name": run_name,
            "artifact_location": settings.artifact_root,
        },
    }


def _trainer_python(settings: Settings) -> str:
    return settings.training.python or sys.executable


def trainer_env_ok(settings: Settings) -> bool:
    """Whether the trainer interpreter can import the trainer and its training stack."""
    probe = "import trainer.train"  # pulls in torch, transformers, trl, peft, datasets, mlflow
    try:
        done = subprocess.run(
            [_trainer_python(settings), "-c", probe], check=False, capture_output=True, text=True
        )
    except OSError as err:
        log.warning("trainer env not usable: %s", err)
        return False
    if done.returncode:
        log.warning("trainer env not usable: %s", (done.stderr.strip().splitlines() or ["?"])[-1])
    return done.returncode == 0


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the trainer (HF Trainer stops between steps), SIGKILL it after a grace period."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def _forward_sigterm(proc: subprocess.Popen) -> Iterator[None]:
    """While the trainer runs, SIGTERM to this task stops the trainer first, then acts as before."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        log.warning("SIGTERM received: stopping the trainer (pid %d)", proc.pid)
        _stop(proc)
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:  # default disposition: die of the same signal, as if no handler had been here
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_trainer(config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Run ``python -m trainer`` on ``config``, streaming its output to the log; return result.json.

    Raises ``RuntimeError`` with the last lines of output when the trainer fails.
    """
    run_dir = Path(config["output_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "trainer_config.json"
    tmp = config_file.with_name(f".{config_file.name}.tmp")
    tmp.write_text(json.dumps(config, indent=2), encoding="utf-8")
    os.replace(tmp, config_file)

    cmd = [_trainer_python(settings), "-m", "trainer", "--config", str(config_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    # Text mode turns tqdm's carriage returns into line ends, so progress shows up line by line.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    )
    log.info("started trainer (pid %d): %s", proc.pid, " ".join(cmd))
    try:
        with _forward_sigterm(proc):
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    tail.append(line)
                    log.info("%s", line)
            returncode = proc.wait()
    finally:
        _stop(proc)  # an exception here (e.g. Airflow's execution timeout) must not orphan it
    if returncode != 0:
        raise RuntimeError(
            f"trainer exited with code {returncode}; last output:\n" + "\n".join(tail)
        )
    return json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
