"""One training run: load, audit, train (resuming if possible), export, record, result.json."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import mlflow
import torch
from datasets import Dataset
from transformers import EarlyStoppingCallback, TrainerCallback, set_seed
from trl import SFTConfig, SFTTrainer

from trainer import backends
from trainer.checkpoints import (
    SealCheckpoints,
    check_resume,
    fetch_file,
    latest_resumable,
    mirror,
    restore_from_mirror,
    write_atomic,
)
from trainer.config import RUN_MARKER, TrainerConfig
from trainer.cpu_kernels import ensure_logprob_kernel
from trainer.data import load_splits
from trainer.tokenizer_audit import audit_tokenizer
from trainer.tracking import (
    RUN_ID_FILE,
    MlflowMetrics,
    flat_params,
    model_card,
    peak_memory_mb,
    plot_losses,
    resolved_config,
    start_run,
)

log = logging.getLogger(__name__)


def sft_config(cfg: TrainerConfig, backend: str, resuming: bool) -> SFTConfig:
    gpu = torch.cuda.is_available()
    bf16 = gpu and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(cfg.output_dir / "checkpoints"),
        max_length=cfg.max_seq_length,
        completion_only_loss=True,
        packing=False,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        # Explicit for both backends: Unsloth's SFTConfig defaults to adamw_8bit and to
        # padding-free batches when these are left unset (unsloth/models/rl.py).
        optim=cfg.optim,
        padding_free=cfg.padding_free,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps or -1,
        seed=cfg.seed,
        data_seed=cfg.seed,
        # TRL defaults to bf16 and gradient checkpointing; neither helps on CPU, and Unsloth
        # already installed its own checkpointing in get_peft_model.
        bf16=bf16,
        fp16=gpu and not bf16,
        gradient_checkpointing=gpu and backend == "hf",
        logging_steps=cfg.logging_steps,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        eval_on_start=not resuming,  # a baseline, but not again (and not counted) on resume
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        restore_callback_states_from_checkpoint=True,  # early-stopping patience survives resume
        report_to="none",
        disable_tqdm=False,
    )


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a finished directory into place; the previous one survives until the swap."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def run(cfg: TrainerConfig, backend: str) -> dict[str, Any]:
    """Train and return the result dict also written to ``<output_dir>/result.json``.
    ``cfg`` has passed :func:`~trainer.config.check_against_model` (``python -m trainer``
    runs it before importing this module)."""
    backends.preflight(cfg, backend)
    run_dir = cfg.output_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_MARKER).touch()  # the dir is a run's from now on (config.check_run_dir)
    resume = latest_resumable(run_dir / "checkpoints")
    if resume is None and cfg.mirror_dir:  # a retry on another worker: the local disk is new
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        resume = restore_from_mirror(cfg.mirror_dir, run_dir / "checkpoints")
        if resume is not None:
            fetch_file(cfg.mirror_dir, RUN_ID_FILE, run_dir)  # continue the same MLflow run
    if resume is not None:
        check_resume(resume, cfg.config_hash(), backend)
    set_seed(cfg.seed)  # before loading: LoRA weights are initialised at load time
    train_ds, eval_ds = load_splits(cfg)
    model, tokenizer = backends.load(cfg, backend)
    audit_tokenizer(tokenizer, model)

    run_id = start_run(cfg)
    if cfg.mirror_dir:
        mirror(run_dir / RUN_ID_FILE, cfg.mirror_dir)
    try:
        result = _train(cfg, backend, model, tokenizer, train_ds, eval_ds, resume, run_id)
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run()
    return result


def _train(
    cfg: TrainerConfig,
    backend: str,
    model: Any,
    tokenizer: Any,
    train_ds: Dataset,
    eval_ds: Dataset,
    resume: Path | None,
    run_id: str,
) -> dict[str, Any]:
    run_dir = cfg.output_dir
    mlflow.log_params(flat_params(cfg))
    mlflow.set_tags(
        {
            "backend": backend,
            "base_model": cfg.base_model,
            "data_version": cfg.data_version or "",
            "config_hash": cfg.config_hash(),
        }
    )
    mlflow.log_dict(resolved_config(cfg), "config/trainer_config.json")

    metrics_cb = MlflowMetrics()
    seal = SealCheckpoints(cfg.mirror_dir, cfg.config_hash(), backend)
    callbacks: list[TrainerCallback] = [seal, metrics_cb]
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    ensure_logprob_kernel()
    trainer = SFTTrainer(
        model=model,
        args=sft_config(cfg, backend, resume is not None),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if resume is not None:
        log.info("resumed from %s", resume.name)
    train_out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    eval_metrics = trainer.evaluate()  # of the best checkpoint, loaded at the end

    history = trainer.state.log_history
    evals = [row["eval_loss"] for row in history if "eval_loss" in row]
    metrics = {
        "eval_loss": eval_metrics["eval_loss"],
        "first_eval_loss": evals[0],
        "train_loss_mean": train_out.training_loss,
        "peak_memory_mb": peak_memory_mb(),
    }
    if metrics_cb.overall_tokens_per_second is not None:
        metrics["tokens_per_second"] = metrics_cb.overall_tokens_per_second
    best = trainer.state.best_model_checkpoint

    card = model_card(cfg, backend, metrics, best and Path(best).name)
    adapter_dir = run_dir / "adapter"
    tmp = _fresh(run_dir / ".adapter.tmp")
    trainer.save_model(str(tmp))  # adapter + tokenizer (the processing class)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    _replace_dir(tmp, adapter_dir)

    export_dir = None
    if cfg.export != "adapter":
        export_dir = run_dir / cfg.export
        tmp = _fresh(run_dir / f".{cfg.export}.tmp")
        backends.export(trainer.model, tokenizer, cfg, backend, tmp)
        _replace_dir(tmp, export_dir)

    mlflow.log_artifacts(str(adapter_dir), "adapter")
    mlflow.log_text(card, "model_card.md")
    mlflow.log_artifact(str(plot_losses(history, run_dir / "loss_curve.png")))
    mlflow.log_metrics({f"final_{k}": v for k, v in metrics.items()})

    result = {
        "mlflow_run_id": run_id,
        "adapter_dir": str(adapter_dir),
        "best_checkpoint": best,
        "global_step": trainer.state.global_step,
        "metrics": metrics,
        "config_hash": cfg.config_hash(),
        "base_model": cfg.base_model,
        "base_revision": cfg.base_revision,
        "backend": backend,
        "export": cfg.export,
        "export_dir": str(export_dir) if export_dir else None,
        "export_files": sorted(p.name for p in export_dir.iterdir()) if export_dir else [],
        "data_version": cfg.data_version,
        "resumed_from": resume.name if resume else None,
    }
    write_atomic(run_dir / "result.json", json.dumps(result, indent=2))
    if cfg.mirror_dir:
        for path in (adapter_dir, export_dir, run_dir / "result.json"):
            if path is not None:
                mirror(path, cfg.mirror_dir)
    return result
