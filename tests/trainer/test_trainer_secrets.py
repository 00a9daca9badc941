"""A password in the tracking URI reaches the trainer, and nothing written or logged holds it."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from mlflow import MlflowClient

from modelyard.training import build_trainer_config, run_trainer
from tests.net import free_port
from trainer.config import ConfigError

PASSWORD = "Hunter2-db-secret"
PARAMS = {"backend": "hf", "max_steps": 5, "lora_r": 4}


@pytest.fixture
def short(settings):
    recipe = settings.training.recipe
    recipe.eval_steps = recipe.save_steps = 5
    recipe.max_seq_length = 64
    return settings


def _files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.postgres
def test_tracking_password_is_used_but_never_written(short, curated, postgres_url, caplog):
    # Trust auth ignores the password, so the URI works while still carrying a secret.
    short.mlflow_tracking_uri = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    dataset = {"path": str(curated), "version": "ds-secrets"}
    config = build_trainer_config(PARAMS, dataset, "secret-run", short)
    with caplog.at_level(logging.INFO, logger="modelyard.training"):
        result = run_trainer(config, short)

    run_dir = Path(config["output_dir"])
    config_file = run_dir / "trainer_config.json"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert _files_holding(short.home, PASSWORD) == []  # run dir, checkpoints, MLflow artifacts

    client = MlflowClient(short.tracking_uri)
    run = client.get_run(result["mlflow_run_id"])  # recorded in the Postgres store
    assert run.info.status == "FINISHED" and run.data.params["lora.r"] == "4"
    recorded = [*run.data.params.values(), *run.data.tags.values()]
    assert not any(PASSWORD in str(value) for value in recorded)
    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(short.home / "dl")))
    assert (artifacts / "config" / "trainer_config.json").is_file()
    assert _files_holding(artifacts, PASSWORD) == []
    assert not any(PASSWORD in r.getMessage() for r in caplog.records)


def test_a_failing_trainer_never_logs_the_password(short, curated, monkeypatch, caplog):
    # An http tracking server with basic-auth credentials that is down: MLflow's error names
    # the URL, credentials included; the launcher must scrub it from the log and the error.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    short.mlflow_tracking_uri = f"http://trainer:{PASSWORD}@127.0.0.1:{free_port()}"
    config = build_trainer_config(PARAMS, {"path": str(curated)}, "down", short)
    with caplog.at_level(logging.INFO, logger="modelyard.training"):
        with pytest.raises(RuntimeError) as failed:
            run_trainer(config, short)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "trainer:***@127.0.0.1" in logged + str(failed.value)  # the URL was in the output
    assert PASSWORD not in logged and PASSWORD not in str(failed.value)
    assert _files_holding(short.home, PASSWORD) == []


def test_a_credential_in_any_other_field_is_refused_before_writing(short, curated):
    config = build_trainer_config(PARAMS, {"path": str(curated)}, "cred", short)
    config["mlflow"]["artifact_location"] = f"ftp://mlflow:{PASSWORD}@files.example/artifacts"
    with pytest.raises(ConfigError, match=r"^mlflow\.artifact_location: holds a credential"):
        run_trainer(config, short)
    assert not Path(config["output_dir"]).exists()
