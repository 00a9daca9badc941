"""The Airflow-side launcher: config from DAG params, streamed logs, result, SIGTERM forwarding."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelyard.training import build_trainer_config, run_trainer
from trainer.config import ConfigError

PARAMS = {"base_model": None, "lora_r": 8, "learning_rate": 5e-3, "max_steps": 10, "backend": "hf"}


@pytest.fixture
def short(settings):
    recipe = settings.training.recipe
    recipe.eval_steps = recipe.save_steps = 5
    recipe.max_seq_length = 128
    return settings


def _dataset(curated: Path) -> dict:
    return {"path": str(curated), "version": None}


def test_run_trainer_streams_logs_and_returns_result(short, curated, caplog):
    config = build_trainer_config(PARAMS, _dataset(curated), "run-1", short)
    assert config["output_dir"] == f"{short.storage}/runs/run-1"
    assert config["base_model"] == short.default_base_model
    assert config["mlflow"]["tracking_uri"] is None  # it travels in the environment
    assert config["eval_file"] is None  # the held-out split never steers training

    with caplog.at_level(logging.INFO, logger="modelyard.training"):
        result = run_trainer(config, short)

    run_dir = Path(config["output_dir"])
    assert result == json.loads((run_dir / "result.json").read_text())
    assert result["global_step"] == 10 and result["backend"] == "hf"
    assert (Path(result["adapter_dir"]) / "adapter_model.safetensors").is_file()
    streamed = [r.getMessage() for r in caplog.records if r.name == "modelyard.training"]
    assert any("'eval_loss'" in line for line in streamed)  # the trainer's own log lines
    assert json.loads((run_dir / "trainer_config.json").read_text()) == config


def test_a_config_the_trainer_rejects_is_refused_before_it_starts(short, curated, tmp_path):
    config = build_trainer_config(PARAMS, _dataset(curated), "bad", short) | {"bogus": 1}
    with pytest.raises(ConfigError, match=r"^bogus: Extra inputs are not permitted"):
        run_trainer(config, short)
    assert not Path(config["output_dir"]).exists()


def test_a_config_the_trainer_refuses_is_one_config_error(short, curated):
    """Exit 2 is the trainer's "config error" (the base model went missing after ``prepare``,
    a worker without the path): one ``ConfigError`` line, which the DAG fails without retry."""
    config = build_trainer_config(PARAMS, _dataset(curated), "gone", short)
    missing = str(Path(short.home) / "models" / "deleted-after-prepare")
    config["base_model"] = missing
    with pytest.raises(ConfigError) as refused:
        run_trainer(config, short)
    assert str(refused.value) == f"base_model: path does not exist: {missing}"


LAUNCH = """
import json, logging, sys
from modelyard.settings import get_settings
from modelyard.training import run_trainer
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
run_trainer(json.load(open(sys.argv[1])), get_settings())
"""


def test_sigterm_to_the_task_stops_the_trainer(short, curated, tmp_path):
    params = PARAMS | {"max_steps": 5000}
    config = build_trainer_config(params, _dataset(curated), "long", short)
    config_file = tmp_path / "long.json"
    config_file.write_text(json.dumps(config))
    task = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    child_pid = None
    for line in task.stdout:
        if line.startswith("started trainer (pid "):
            child_pid = int(line.split("pid ")[1].split(")")[0])
        if "'eval_loss'" in line:  # training is under way
            break
    assert child_pid is not None
    task.send_signal(signal.SIGTERM)
    rest = task.stdout.read()
    assert task.wait(60) == -signal.SIGTERM  # the task still dies of the signal it got
    assert "SIGTERM received: stopping the trainer" in rest
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"trainer pid {child_pid} outlived its task")
    assert not (Path(config["output_dir"]) / "result.json").exists()


def test_a_trainer_interpreter_that_is_not_there_is_named(short, curated):
    config = build_trainer_config(PARAMS, _dataset(curated), "nowhere", short)
    short.training.python = "/nonexistent/bin/python"
    with pytest.raises(RuntimeError, match="cannot start the trainer with /nonexistent/bin/python"):
        run_trainer(config, short)


def test_a_trainer_that_crashes_raises_with_its_last_lines(short, curated, tmp_path):
    """Any other exit (an OOM kill, a driver fault) stays a RuntimeError: Airflow retries it."""
    crashing = tmp_path / "python"
    crashing.write_text(
        "#!/bin/sh\necho 'loading shards'\necho 'CUDA error: device lost' >&2\nexit 3\n"
    )
    crashing.chmod(0o755)
    config = build_trainer_config(PARAMS, _dataset(curated), "crash", short)
    short.training.python = str(crashing)
    with pytest.raises(RuntimeError, match=r"(?s)code 3.*loading shards.*device lost"):
        run_trainer(config, short)
