"""Two ways to a LoRA-wrapped model: Unsloth on NVIDIA GPUs, HF transformers + PEFT anywhere.

Both return a PEFT model and its tokenizer, so everything after loading (TRL's SFTTrainer,
checkpoints, MLflow) is one code path. The Unsloth side is deliberately thin: it only asks
``FastLanguageModel`` for what Unsloth's own notebooks ask for.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from trainer.config import BNB_OPTIMIZERS, ConfigError, TrainerConfig

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
    if cfg.padding_free and backend != "unsloth":
        raise BackendError(
            f"padding_free: needs backend=unsloth on a GPU (resolved backend: {backend})"
        )
    if cfg.optim in BNB_OPTIMIZERS and not gpu:
        raise BackendError(
            f"optim: {cfg.optim} keeps its state in 8 bits with bitsandbytes, which needs an "
            "NVIDIA GPU; use adamw_torch_fused on this machine"
        )
    return backend


def preflight(cfg: TrainerConfig, backend: str) -> None:
    """What only the installed Unsloth can tell, checked before training instead of after it.

    Unsloth validates the GGUF quantization only after the 16-bit merge, and when llama.cpp is
    missing it downloads and builds it at export time (``HF_HUB_OFFLINE`` does not stop that).
    """
    if backend != "unsloth" or cfg.export != "gguf":
        return
    from unsloth.save import ALLOWED_QUANTS
    from unsloth_zoo import llama_cpp

    if cfg.gguf_quantization not in ALLOWED_QUANTS:
        raise BackendError(
            f"gguf_quantization: {cfg.gguf_quantization!r} is not accepted by the installed "
            f"Unsloth (choose from {', '.join(ALLOWED_QUANTS)})"
        )
    try:
        llama_cpp.check_llama_cpp()  # its default folder: UNSLOTH_LLAMA_CPP_PATH
    except RuntimeError as err:
        raise BackendError(
            f"export: gguf needs a built llama.cpp at UNSLOTH_LLAMA_CPP_PATH "
            f"({llama_cpp.LLAMA_CPP_DEFAULT_DIR}): {str(err).splitlines()[0]} "
            "(the GPU images build it; Unsloth would otherwise fetch it from the internet)"
        ) from None


def load(cfg: TrainerConfig, backend: str) -> tuple[Any, Any]:
    """Return ``(peft_model, tokenizer)`` for ``backend``."""
    return _load_unsloth(cfg) if backend == "unsloth" else _load_hf(cfg)


def _refuse_substitutes(cfg: TrainerConfig):
    """``on_model_resolved`` hook: refuse any repo other than the one asked for.

    Unsloth reports the repo it is about to load before fetching it. ``use_exact_model_name``
    stops its name mapper, but other rewrites remain (stripping ``-bnb-4bit`` where pre-quantized
    repos are not allowed; ``*-bf16`` hub repos silently loaded in 16 bit): either would make the
    recorded base model, revision or precision false.
    """

    def check(resolved: str) -> None:
        if resolved != cfg.base_model:
            raise BackendError(
                f"base_model: Unsloth would load {resolved!r} instead of {cfg.base_model!r} "
                "(and drop base_revision); name the repo Unsloth resolves to"
            )
        if cfg.load_in_4bit and resolved.lower().endswith("-bf16") and not Path(resolved).is_dir():
            raise BackendError(
                f"load_in_4bit: Unsloth loads the 16-bit hub repo {resolved!r} in 16 bit, "
                "ignoring load_in_4bit; use a 4-bit repo or load_in_4bit=false"
            )

    return check


def _load_unsloth(cfg: TrainerConfig) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=cfg.base_model,
        revision=cfg.base_revision,
        # Without it Unsloth swaps hub names for its mirrors (meta-llama/X -> unsloth/X-bnb-4bit)
        # and drops the revision with a warning (unsloth/models/loader.py).
        use_exact_model_name=True,
        on_model_resolved=_refuse_substitutes(cfg),
        max_seq_length=cfg.max_seq_length,
        load_in_4bit=cfg.load_in_4bit,
        dtype=None,  # Unsloth picks bf16 where supported, else fp16
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora.r,
        lora_alpha=cfg.lora.scaling_alpha,
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
        lora_alpha=cfg.lora.scaling_alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora), tokenizer


class ExportError(RuntimeError):
    """An export that did not deliver what it promised (e.g. no .gguf file appeared)."""


def export(model: Any, tokenizer: Any, cfg: TrainerConfig, backend: str, out_dir: Path) -> None:
    """Write the merged (or GGUF) model into ``out_dir``; the adapter is saved separately."""
    if cfg.export == "gguf":
        _export_gguf(model, tokenizer, cfg, out_dir)
    elif backend == "unsloth":
        model.save_pretrained_merged(str(out_dir), tokenizer, save_method="merged_16bit")
    else:
        model.merge_and_unload().save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


def _export_gguf(model: Any, tokenizer: Any, cfg: TrainerConfig, out_dir: Path) -> None:
    """Deliver Unsloth's GGUF files (and its Ollama Modelfile) in ``out_dir``.

    ``save_pretrained_gguf(d, ...)`` writes the 16-bit merge it converts from into ``d`` and the
    ``.gguf`` files into the sibling ``f"{d}_gguf"``, and returns where they are
    (``unsloth/save.py``: ``_gguf_output_directory``). The merge is scratch here.
    """
    merge_dir = out_dir.with_name(f"{out_dir.name}.merge")
    scratch = (merge_dir, Path(f"{merge_dir}_gguf"))
    for path in scratch:
        shutil.rmtree(path, ignore_errors=True)
    try:
        saved = (
            model.save_pretrained_gguf(
                str(merge_dir), tokenizer, quantization_method=cfg.gguf_quantization
            )
            or {}
        )
        gguf_dir = Path(saved.get("gguf_directory") or scratch[1])
        listed = saved.get("gguf_files") or sorted(gguf_dir.glob("*.gguf"))
        files = [Path(f) for f in listed]
        bad = [f for f in files if not _is_gguf(f)]
        if not files or bad:
            raise ExportError(
                f"export: Unsloth's save_pretrained_gguf delivered no valid .gguf file in "
                f"{gguf_dir} ({'not GGUF: ' + ', '.join(map(str, bad)) if bad else 'none found'})"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        modelfile = gguf_dir / "Modelfile"
        for path in [*files, *([modelfile] if modelfile.is_file() else [])]:
            shutil.move(str(path), out_dir / path.name)
    finally:
        for path in scratch:
            shutil.rmtree(path, ignore_errors=True)


def _is_gguf(path: Path) -> bool:
    """A non-empty file with GGUF's magic bytes (llama.cpp's ``gguf.h``)."""
    try:
        with path.open("rb") as f:
            return path.suffix == ".gguf" and f.read(4) == b"GGUF"
    except OSError:
        return False
