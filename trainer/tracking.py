"""MLflow bookkeeping, done explicitly (``report_to="none"``) so what is logged is visible here.

One MLflow run per run dir: its id is stored in the run dir, so a resumed job keeps appending to
the run it started instead of scattering a training across several.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
from transformers import TrainerCallback

from trainer.checkpoints import write_atomic
from trainer.config import TrainerConfig
from trainer.redaction import redact

RUN_ID_FILE = "mlflow_run.json"
# HF's end-of-training summary reuses "train_loss" for the mean over the run.
_RENAMES = {"loss": "train_loss", "train_loss": "train_loss_mean"}


def start_run(cfg: TrainerConfig) -> str:
    """Start (or re-open) the run dir's MLflow run and make it the active run."""
    mlflow.set_tracking_uri(cfg.mlflow.resolved_tracking_uri())
    id_file = cfg.output_dir / RUN_ID_FILE
    run_id = cfg.mlflow.run_id
    if run_id is None and id_file.is_file():
        run_id = json.loads(id_file.read_text(encoding="utf-8"))["run_id"]
    if run_id is None:
        experiment = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else mlflow.create_experiment(
                cfg.mlflow.experiment, artifact_location=cfg.mlflow.artifact_location
            )
        )
        run = mlflow.start_run(experiment_id=experiment_id, run_name=cfg.mlflow.run_name)
    else:
        run = mlflow.start_run(run_id=run_id)
    write_atomic(id_file, json.dumps({"run_id": run.info.run_id}))
    return run.info.run_id


def resolved_config(cfg: TrainerConfig) -> dict[str, Any]:
    """The full config as recorded in MLflow: credentials in any URI masked."""
    return redact(cfg.model_dump(mode="json"))


def flat_params(cfg: TrainerConfig) -> dict[str, Any]:
    """The recipe as MLflow params, credentials masked (the resolved config is an artifact)."""
    out: dict[str, Any] = {}
    for key, value in redact(cfg.recipe()).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    out["lora.alpha"] = cfg.lora.scaling_alpha  # the value used (empty in the config = 2 x r)
    return out


def peak_memory_mb() -> float:
    """Peak device memory on GPU, peak resident set size of this process on CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


class MlflowMetrics(TrainerCallback):
    """Stream every numeric log line to the active MLflow run, plus tokens/s and peak memory.

    Tokens/s divides TRL's running ``num_tokens`` by optimizer-step time only, so evaluation and
    checkpointing pauses do not dilute it.
    """

    def __init__(self) -> None:
        self._step_started = 0.0
        self._step_seconds = 0.0  # since the previous log line
        self._total_seconds = 0.0
        self._tokens_seen: float | None = None  # TRL's num_tokens at the first log line
        self._last_tokens: float | None = None
        self.overall_tokens_per_second: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self._step_seconds += time.monotonic() - self._step_started

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = {
            _RENAMES.get(k, k): float(v)
            for k, v in logs.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        tokens = logs.get("num_tokens")
        if tokens is not None:
            if self._last_tokens is not None and self._step_seconds > 0:
                metrics["tokens_per_second"] = (tokens - self._last_tokens) / self._step_seconds
                self._total_seconds += self._step_seconds
                self.overall_tokens_per_second = (tokens - self._tokens_seen) / self._total_seconds
            if self._tokens_seen is None:
                self._tokens_seen = tokens
            self._last_tokens = tokens
            self._step_seconds = 0.0
        metrics["peak_memory_mb"] = peak_memory_mb()
        mlflow.log_metrics(metrics, step=state.global_step)


def plot_losses(log_history: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        steps = [row["step"] for row in log_history if key in row]
        if steps:
            ax.plot(
                steps,
                [row[key] for row in log_history if key in row],
                label=label,
                marker="." if key == "eval_loss" else None,
            )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def model_card(
    cfg: TrainerConfig, backend: str, metrics: dict[str, float], best_checkpoint: str | None
) -> str:
    hyper = "\n".join(
        f"| {k} | {v} |"
        for k, v in flat_params(cfg).items()
        if k.startswith(
            (
                "lora.",
                "learning_rate",
                "lr_scheduler",
                "max_",
                "num_epochs",
                "batch_size",
                "grad_accum",
                "seed",
                "load_in_4bit",
                "warmup_ratio",
                "weight_decay",
                "optim",
                "padding_free",
            )
        )
    )
    results = "\n".join(f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items()))
    return redact(f"""# LoRA adapter for {cfg.base_model}

- Base model: `{cfg.base_model}` (revision `{cfg.base_revision or "default"}`)
- Training data version: `{cfg.data_version or "unversioned"}`
- Backend: `{backend}`; exported: `{cfg.export}`; best checkpoint: `{best_checkpoint}`

## Intended use
Candidate model of the modelyard pipeline: it answers chat prompts of the training data's task and
is promoted only after the offline gate compares it with the incumbent on the frozen eval suite.
Not evaluated for other tasks, languages or safety-critical use.

## Hyperparameters
| name | value |
| --- | --- |
{hyper}

## Evaluation (held-out split of the training data, best checkpoint)
| metric | value |
| --- | --- |
{results}
""")
