"""`make gpu-check`: prove the real GPU path on a machine with an NVIDIA GPU.

The test suite only fakes Unsloth at one seam (no GPU there). This script runs the real thing:
it builds the trainer's GPU environment in its own venv (CUDA torch, ``trainer/
requirements-gpu.txt``), trains with the Unsloth backend and 4-bit QLoRA for a few dozen steps on
a small base model, SIGKILLs the trainer after its first sealed checkpoint and resumes it, exports
GGUF when llama.cpp is present, and prints tokens/s, peak VRAM and the MLflow run.

Standard library only: it runs before any environment exists. Without a GPU it stops at once
with one line, having installed nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "trainer" / "requirements-gpu.txt"
GGUF_REQUIREMENTS = ROOT / "trainer" / "requirements-gguf.txt"
SEAL = "modelyard-sealed.json"  # trainer.checkpoints.SEAL (the trainer is not importable here)


class CheckFailed(Exception):
    """One line for the person running the check."""


def gpus() -> list[str]:
    """The NVIDIA GPUs ``nvidia-smi -L`` lists; ``CheckFailed`` when there are none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise CheckFailed("no NVIDIA GPU here: nvidia-smi is not installed")
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CheckFailed(f"no NVIDIA GPU here: nvidia-smi -L failed ({err})") from None
    listed = [line for line in done.stdout.splitlines() if line.startswith("GPU ")]
    if done.returncode or not listed:
        reason = (done.stderr or done.stdout).strip().splitlines()[:1] or ["no GPU listed"]
        raise CheckFailed(f"no NVIDIA GPU here: nvidia-smi -L: {reason[0]}")
    return listed


def llama_cpp_dir() -> Path | None:
    """Where Unsloth will look for llama.cpp (``UNSLOTH_LLAMA_CPP_PATH``, else its default), if
    it holds what ``unsloth_zoo.llama_cpp.check_llama_cpp`` needs."""
    folder = Path(
        os.environ.get("UNSLOTH_LLAMA_CPP_PATH") or Path.home() / ".unsloth" / "llama.cpp"
    )
    quantizer = folder / "llama-quantize"
    if os.access(quantizer, os.X_OK) and (folder / "convert_hf_to_gguf.py").is_file():
        return folder
    return None


def build_env(path: Path, torch_index: str, gguf: bool) -> Path:
    """The trainer's GPU venv at ``path`` (reused while the requirement files are unchanged)."""
    files = [REQUIREMENTS, REQUIREMENTS.parent / "requirements.txt"]
    files += [GGUF_REQUIREMENTS] if gguf else []
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files) + torch_index.encode())
    stamp = path / ".modelyard-gpu-check"
    python = path / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return python
    print(f"gpu-check: building the trainer's GPU environment in {path}", flush=True)
    venv.create(path, with_pip=True, clear=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    steps = [
        [*pip, "--upgrade", "pip"],
        # CUDA torch first, so the pins in the requirement files keep it.
        [*pip, "torch==2.13.0", "torchvision==0.28.0", "--index-url", torch_index],
        [*pip, "-r", str(REQUIREMENTS), *(["-r", str(GGUF_REQUIREMENTS)] if gguf else [])],
    ]
    for step in steps:
        if subprocess.run(step).returncode:
            raise CheckFailed(f"installing the GPU environment failed: {' '.join(step)}")
    stamp.write_text(digest.hexdigest())
    return python


def write_config(args: argparse.Namespace, work: Path, export: str) -> Path:
    sys.path.insert(0, str(ROOT / "include"))
    from modelyard.sampledata import curated_records, write_curated  # stdlib only

    records = curated_records(args.records)
    split = int(len(records) * 0.9)
    dataset = write_curated(work / "dataset", records[:split], records[split:])
    config = {
        "backend": "unsloth",
        "load_in_4bit": True,
        "base_model": args.base_model,
        "train_file": str(dataset / "train.jsonl"),
        "eval_file": str(dataset / "eval.jsonl"),
        "output_dir": str(work / "run"),
        "max_seq_length": args.max_seq_length,
        "lora": {"r": 16},
        "learning_rate": 2e-4,
        "optim": "adamw_8bit",
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "eval_steps": args.save_steps,
        "save_steps": args.save_steps,
        "logging_steps": 5,
        "early_stopping_patience": None,
        "export": export,
        "mlflow": {"experiment": "gpu-check", "run_name": "gpu-check"},
    }
    path = work / "trainer_config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def trainer_env(work: Path, offline: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    # The launcher's contract: the tracking URI travels in the environment.
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # `make` sets them for the tests
        env[name] = "1" if offline else "0"
    return env


def run_killed_then_resumed(python: Path, config: Path, env: dict, log: Path) -> dict:
    """Train until the first sealed checkpoint, SIGKILL, train again: the resumed result."""
    checkpoints = config.parent / "run" / "checkpoints"
    cmd = [str(python), "-m", "trainer", "--config", str(config)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        while proc.poll() is None and not list(checkpoints.glob(f"checkpoint-*/{SEAL}")):
            time.sleep(0.5)
        if proc.poll() is not None:
            raise CheckFailed(
                f"the first run ended before a checkpoint (code {proc.returncode}); see {log}"
            )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        print("gpu-check: killed the trainer after its first checkpoint; resuming", flush=True)
        if subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent
        ).returncode:
            raise CheckFailed(f"the resumed run failed; see {log}")
    result = json.loads((config.parent / "run" / "result.json").read_text())
    if not result.get("resumed_from"):
        raise CheckFailed(f"the second run did not resume from a checkpoint; see {log}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-model", default="Qwen/Qwen2.5-0.5B-Instruct", help="hub name or local path"
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--save-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--work-dir", type=Path, default=ROOT / ".local" / "gpu-check")
    parser.add_argument("--torch-index", default="https://download.pytorch.org/whl/cu128")
    parser.add_argument("--offline", action="store_true", help="base model already in the HF cache")
    args = parser.parse_args(argv)
    try:
        listed = gpus()
        print(f"gpu-check: {listed[0]}", flush=True)
        llama_cpp = llama_cpp_dir()
        python = build_env(args.work_dir / "venv", args.torch_index, gguf=llama_cpp is not None)
        work = args.work_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
        work.mkdir(parents=True)
        config = write_config(args, work, export="gguf" if llama_cpp else "adapter")
        env = trainer_env(work, args.offline)
        result = run_killed_then_resumed(python, config, env, work / "trainer.log")
    except CheckFailed as err:
        print(f"gpu-check: {err}", file=sys.stderr)
        return 1
    metrics = result["metrics"]
    gguf = (
        ", ".join(result["export_files"])
        if llama_cpp
        else "skipped (no llama.cpp at UNSLOTH_LLAMA_CPP_PATH)"
    )
    print("\n| check | value |\n| --- | --- |")
    for name, value in [
        ("GPU", listed[0]),
        ("base model (4-bit QLoRA, unsloth)", args.base_model),
        ("steps", f"{result['global_step']} (resumed from {result['resumed_from']})"),
        ("tokens/s (training steps, after resume)", f"{metrics.get('tokens_per_second', 0):.0f}"),
        ("peak VRAM (MB)", f"{metrics['peak_memory_mb']:.0f}"),
        (
            "eval loss (first -> best)",
            f"{metrics['first_eval_loss']:.3f} -> {metrics['eval_loss']:.3f}",
        ),
        ("GGUF", gguf),
        ("MLflow run", f"{result['mlflow_run_id']} in {env['MLFLOW_TRACKING_URI']}"),
        ("run dir", str(work / "run")),
    ]:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
