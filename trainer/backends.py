"""Two ways to a LoRA-wrapped model: Unsloth on NVIDIA GPUs, HF transformers + PEFT anywhere.

Both return a PEFT model and its tokenizer, so everything after loading (TRL's SFTTrainer,
checkpoints, MLflow) is one code path. The Unsloth side is deliberately thin: it only asks
``FastLanguageModel`` for what Unsloth's own notebooks ask for.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from trainer.config import ConfigError, TrainerConfig

log = logging.getLogger(__name__)


class BackendError(ConfigError):
    """The requested backend cannot run here (no GPU, package missing, unsupported export)."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _unsloth_installed() -> bool:
    return "unsloth" in sys.modules or importlib.util.find_spec("unsloth") is not None


def resolve_backend(cfg: TrainerConfig) -> str:
    """Pick the backend and refuse combinations that would only fail after the model loaded."""
    gpu = cuda_available()
    if cfg.backend == "unsloth":
        # Checked before importing unsloth: its import raises on machines without a GPU.
        if not gpu:
            raise BackendError(
                "backend: unsloth needs an NVIDIA GPU and torch sees none; "
                "use backend=hf (or auto) on this machine"
            )
        if not _unsloth_installed():
            raise BackendError(
                "backend: unsloth is not installed in this environment "
                "(pip install -r trainer/requirements-gpu.txt)"
            )
    backend = cfg.backend
    if backend == "auto":
        backend = "unsloth" if gpu and _unsloth_installed() else "hf"
    if cfg.export == "gguf" and backend != "unsloth":
        raise BackendError(
            f"export: gguf is produced by Unsloth's save_pretrained_gguf and "
            f"needs backend=unsloth on a GPU (resolved backend: {backend})"
        )
    return backend


def load(cfg: TrainerConfig, backend: str) -> tuple[Any, Any]:
    """Return ``(peft_model, tokenizer)`` for ``backend``."""
    return _load_unsloth(cfg) if backend == "unsloth" else _load_hf(cfg)


def _load_unsloth(cfg: TrainerConfig) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=cfg.base_model,
        revision=cfg.base_revision,
        max_seq_length=cfg.max_seq_length,
        load_in_4bit=cfg.load_in_4bit,
        dtype=None,  # Unsloth picks bf16 where supported, else fp16
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=cfg.seed,
    )
    return model, tokenizer


def _load_hf(cfg: TrainerConfig) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"revision": cfg.base_revision}
    quantize = cfg.load_in_4bit and cuda_available()
    if cfg.load_in_4bit and not quantize:
        log.warning("load_in_4bit: bitsandbytes 4-bit needs CUDA; loading full precision")
    if quantize:
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(cfg.base_model, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model, revision=cfg.base_revision)
    if quantize:
        model = prepare_model_for_kbit_training(model)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora), tokenizer


def export(model: Any, tokenizer: Any, cfg: TrainerConfig, backend: str, out_dir: Path) -> None:
    """Write the merged (or GGUF) model into ``out_dir``; the adapter is saved separately."""
    if cfg.export == "gguf":
        model.save_pretrained_gguf(
            str(out_dir), tokenizer, quantization_method=cfg.gguf_quantization
        )
    elif backend == "unsloth":
        model.save_pretrained_merged(str(out_dir), tokenizer, save_method="merged_16bit")
    else:
        model.merge_and_unload().save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
