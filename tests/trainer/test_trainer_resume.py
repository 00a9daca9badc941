"""Kill -9 mid-run, run again: training resumes from the newest sealed checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from trainer_helpers import trainer_cmd, write_config

from trainer.__main__ import main
from trainer.checkpoints import SEAL, latest_resumable


def _run(cfg_file: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(trainer_cmd(cfg_file), check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def _config(make_config, tmp_path: Path, name: str) -> Path:
    cfg = make_config(
        output_dir=str(tmp_path / name),
        max_steps=40,
        eval_steps=10,
        save_steps=10,
        early_stopping_patience=None,
        seed=11,
        lora={"r": 8, "alpha": 16, "dropout": 0.1},
    )
    return write_config(cfg, tmp_path / f"{name}.json")


def _half_write(checkpoint: Path, step: int) -> Path:
    """What a worker killed inside ``save_model`` leaves behind: newer, unsealed, truncated."""
    broken = checkpoint.with_name(f"checkpoint-{step}")
    shutil.copytree(checkpoint, broken)
    (broken / SEAL).unlink()
    (broken / "optimizer.pt").unlink()
    (broken / "trainer_state.json").write_text('{"global_step": ')
    return broken


def _reference(cfg_file: Path) -> None:
    """The uninterrupted run to compare with, in this process (the training stack is loaded
    here already; a child would import it again) with one thread, as the children have."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["--config", str(cfg_file)]) == 0
    finally:
        torch.set_num_threads(threads)


def test_sigkill_then_rerun_resumes(make_config, tmp_path):
    _reference(_config(make_config, tmp_path, "reference"))
    reference = json.loads((tmp_path / "reference" / "result.json").read_text())

    cfg_file = _config(make_config, tmp_path, "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    proc = subprocess.Popen(
        trainer_cmd(cfg_file), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while latest_resumable(checkpoints) is None and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "result.json").exists(), "the run finished before the kill"
    survivor = latest_resumable(checkpoints)
    first_step = json.loads((survivor / "trainer_state.json").read_text())["global_step"]
    _half_write(survivor, 10_000)
    run_id = json.loads((tmp_path / "run" / "mlflow_run.json").read_text())["run_id"]

    done = _run(cfg_file)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert f"resumed from {survivor.name}" in done.stdout
    assert result["resumed_from"] == survivor.name
    assert first_step < result["global_step"] == 40
    assert result["mlflow_run_id"] == run_id  # the same MLflow run continues
    # Optimizer, scheduler, RNG and data order continued: same end point as without the kill.
    assert result["metrics"]["eval_loss"] == pytest.approx(
        reference["metrics"]["eval_loss"], rel=1e-3
    )


def _s3_objects(bucket: str, prefix: str) -> list[str]:
    import boto3

    name = bucket.removeprefix("s3://")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_a_retry_on_a_new_worker_resumes_from_s3(make_config, curated, tmp_path, s3_bucket):
    """Preemption takes the worker's disk with it: the retry starts from an empty run dir, reads
    its data from S3 and pulls the newest sealed checkpoint (and the MLflow run) back from S3."""
    import boto3

    s3 = boto3.client("s3")
    bucket = s3_bucket.removeprefix("s3://")
    for name in ("train.jsonl", "eval.jsonl"):
        s3.upload_file(str(curated / name), bucket, f"datasets/ds-1/{name}")
    mirror_dir = f"{s3_bucket}/runs/r1"
    cfg = make_config(
        train_file=f"{s3_bucket}/datasets/ds-1/train.jsonl",
        eval_file=f"{s3_bucket}/datasets/ds-1/eval.jsonl",
        data_version="ds-1",
        output_dir=str(tmp_path / "worker-1"),
        mirror_dir=mirror_dir,
        max_steps=40,
        eval_steps=10,
        save_steps=10,
        early_stopping_patience=None,
        seed=11,
    )
    proc = subprocess.Popen(
        trainer_cmd(write_config(cfg, tmp_path / "first.json")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    sealed: list[str] = []
    while not sealed and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint reached S3"
        sealed = [k for k in _s3_objects(s3_bucket, "runs/r1/checkpoints/") if k.endswith(SEAL)]
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "runs/r1/result.json" not in _s3_objects(s3_bucket, "runs/r1/"), "finished too soon"
    mirrored = {
        k.split("/")[3] for k in _s3_objects(s3_bucket, "runs/r1/checkpoints/") if SEAL in k
    }
    run_id = json.loads(s3.get_object(Bucket=bucket, Key="runs/r1/mlflow_run.json")["Body"].read())
    shutil.rmtree(tmp_path / "worker-1")  # the preempted worker's disk is gone

    retry = cfg | {"output_dir": str(tmp_path / "worker-2")}
    done = _run(write_config(retry, tmp_path / "retry.json"))
    result = json.loads((tmp_path / "worker-2" / "result.json").read_text())
    resumed = result["resumed_from"]
    assert resumed in mirrored and f"resumed from {resumed}" in done.stdout + done.stderr
    assert result["global_step"] == 40
    assert result["mlflow_run_id"] == run_id["run_id"]  # the same MLflow run continues
    steps = [
        m.step
        for m in MlflowClient(cfg["mlflow"]["tracking_uri"]).get_metric_history(
            run_id["run_id"], "eval_loss"
        )
    ]
    resumed_step = int(resumed.split("-")[1])
    # One run: the first worker logged up to the checkpoint, the retry continued to step 40.
    assert {resumed_step, 40} <= set(steps) and max(steps) == 40
    objects = _s3_objects(s3_bucket, "runs/r1/")
    assert {"runs/r1/result.json", "runs/r1/adapter/adapter_model.safetensors"} <= set(objects)
    assert any(k.startswith("runs/r1/checkpoints/checkpoint-40/") for k in objects)
