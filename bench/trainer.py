"""Trainer throughput and peak memory: median of a few real ``python -m trainer`` runs.

Default: the ``hf`` backend on the tiny model and the sample task, on this machine's CPU.
Each run is a fresh process, so peak memory (RSS on CPU, max allocated on GPU) is per run.
On a GPU worker, compare the backends on a real base model, e.g.:

    python bench/trainer.py --backend hf --base-model /models/Llama-3.2-1B-Instruct --load-in-4bit
    python bench/trainer.py --backend unsloth --base-model /models/Llama-3.2-1B-Instruct \
        --load-in-4bit
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def sample_dataset(root: Path) -> Path:
    from modelyard.sampledata import curated_records, write_curated

    records = curated_records(200)
    return write_curated(root / "dataset", records[:170], records[170:])


def run_config(args: argparse.Namespace, model: Path, dataset: Path, run_root: Path) -> Path:
    """One measured run: evaluation and checkpointing only once, at the end."""
    cfg = {
        "backend": args.backend,
        "base_model": str(model),
        "train_file": str(dataset / "train.jsonl"),
        "eval_file": str(dataset / "eval.jsonl"),
        "output_dir": str(run_root / "run"),
        "max_seq_length": args.max_seq_length,
        "lora": {"r": 16, "alpha": 32},
        "load_in_4bit": args.load_in_4bit,
        "learning_rate": 5e-3,
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "eval_steps": args.steps,
        "save_steps": args.steps,
        "logging_steps": max(1, args.steps // 10),
        "early_stopping_patience": None,
        "mlflow": {
            "tracking_uri": f"sqlite:///{run_root / 'mlflow.db'}",
            "artifact_location": str(run_root / "artifacts"),
            "experiment": "bench",
        },
    }
    path = run_root / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def bench(args: argparse.Namespace, root: Path) -> dict[str, float]:
    from modelyard.tinymodel import build_tiny_model

    model = Path(args.base_model) if args.base_model else build_tiny_model(root / "tiny-llama")
    dataset = Path(args.dataset) if args.dataset else sample_dataset(root)
    samples: list[dict] = []
    for i in range(args.runs):
        run_root = root / f"run-{i}"
        run_root.mkdir()
        config = run_config(args, model, dataset, run_root)
        done = subprocess.run(
            [sys.executable, "-m", "trainer", "--config", str(config)],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if done.returncode:
            sys.exit(f"run {i} failed:\n{done.stderr[-2000:]}")
        samples.append(json.loads((run_root / "run" / "result.json").read_text())["metrics"])
    return {
        key: statistics.median(s[key] for s in samples)
        for key in ("tokens_per_second", "peak_memory_mb")
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="hf", choices=["hf", "unsloth", "auto"])
    parser.add_argument("--base-model", help="path of a base model; default: the tiny model")
    parser.add_argument("--dataset", help="dir with train.jsonl/eval.jsonl; default: sample data")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--load-in-4bit", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        row = bench(args, Path(tmp))
    model = args.base_model or "tiny-llama (96 hidden, 2 layers)"
    print(
        "| backend | base model | 4-bit | batch | seq len | runs | tokens/s (median) "
        "| peak memory MB (median) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {args.backend} | {model} | {args.load_in_4bit} | {args.batch_size} "
        f"| {args.max_seq_length} | {args.runs} | {row['tokens_per_second']:.0f} "
        f"| {row['peak_memory_mb']:.0f} |"
    )
    print(
        "\nOn a GPU worker (trainer/requirements-gpu.txt installed), compare both backends:\n"
        "  python bench/trainer.py --backend hf --base-model MODEL_DIR --load-in-4bit "
        "--max-seq-length 1024\n"
        "  python bench/trainer.py --backend unsloth --base-model MODEL_DIR --load-in-4bit "
        "--max-seq-length 1024"
    )


if __name__ == "__main__":
    main()
