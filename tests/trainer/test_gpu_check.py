"""`make gpu-check` proves the real GPU path; here, without a GPU, it must stop at once with one
clear line, having installed nothing."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROKEN_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)


def _path_with(tmp_path: Path, nvidia_smi: str | None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f'#!/bin/sh\necho "{nvidia_smi}"\nexit 9\n')
        fake.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


@pytest.mark.parametrize(
    ("nvidia_smi", "reason"),
    [
        (None, "nvidia-smi is not installed"),
        (BROKEN_DRIVER, "nvidia-smi -L: NVIDIA-SMI has failed because it couldn't communicate"),
    ],
    ids=["no-driver-tools", "driver-not-loaded"],
)
def test_without_a_gpu_it_fails_with_one_line(tmp_path, nvidia_smi, reason):
    work = tmp_path / "gpu-check"
    done = subprocess.run(
        [
            "make",
            "-s",
            "gpu-check",
            f"PYTHON={sys.executable}",
            f"GPU_CHECK_ARGS=--work-dir {work}",
        ],
        cwd=ROOT,
        env={**os.environ, "PATH": _path_with(tmp_path, nvidia_smi)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if not line.startswith("make")]
    assert len(lines) == 1 and lines[0].startswith(f"gpu-check: no NVIDIA GPU here: {reason}")
    assert "Traceback" not in done.stderr + done.stdout
    assert not work.exists()  # nothing built, nothing downloaded


def test_its_trainer_config_is_valid_for_the_trainer(tmp_path, monkeypatch):
    """It never runs in CI, so the config it writes is checked against the trainer's schema here."""
    import importlib.util

    from trainer.config import load_config

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    args = argparse.Namespace(
        base_model="Qwen/Qwen2.5-0.5B-Instruct",
        steps=40,
        save_steps=10,
        batch_size=8,
        max_seq_length=512,
        records=100,
    )
    config_file = gpu_check.write_config(args, tmp_path, export="gguf")
    env = gpu_check.trainer_env(tmp_path, offline=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    cfg = load_config(config_file)
    assert (cfg.backend, cfg.load_in_4bit, cfg.export, cfg.optim) == (
        "unsloth",
        True,
        "gguf",
        "adamw_8bit",
    )
    assert cfg.mlflow.tracking_uri is None  # it travels in the environment, as from the launcher
    assert cfg.mlflow.resolved_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert env["HF_HUB_OFFLINE"] == "0"  # the base model may have to be downloaded
