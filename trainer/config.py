"""The trainer's one typed config, validated before any model weight is read.

``TrainingRecipe`` holds every hyperparameter (what a model is a function of, besides its base
and data); ``TrainerConfig`` adds where the run reads, writes and reports. The library's settings
embed the recipe and build a ``TrainerConfig`` with this very model, so the schema exists once.

Every error is reduced to one line naming the field (``ConfigError``), because the person reading
it is looking at an Airflow task log, not at a pydantic traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A bad config: the message is one line that starts with the offending field."""


# ``python -m trainer`` exits with this code after printing the prefix and the ConfigError's
# line on stderr: a launcher tells a config that cannot work (no retry) from a crash.
CONFIG_ERROR_EXIT = 2
CONFIG_ERROR_PREFIX = "trainer: config error: "


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: ``unsloth.save.ALLOWED_QUANTS`` of Unsloth 2026.10.9 (the IQ quants need an importance matrix
#: and are left out). Copied because Unsloth cannot be imported without a GPU; on a GPU worker
#: ``backends.preflight`` checks the installed Unsloth still accepts the configured one.
GGUF_QUANTIZATIONS = (
    "q4_k_m",
    "q5_k_m",
    "q8_0",
    "f16",
    "bf16",
    "f32",
    "not_quantized",
    "fast_quantized",
    "quantized",
    "q2_k",
    "q2_k_l",
    "q3_k_l",
    "q3_k_m",
    "q3_k_s",
    "q3_k_xs",
    "q4_0",
    "q4_1",
    "q4_k_s",
    "q4_k",
    "q5_k",
    "q5_0",
    "q5_1",
    "q5_k_s",
    "q6_k",
)
#: Optimizers whose state lives in 8 bits (bitsandbytes): NVIDIA GPUs only.
BNB_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit")


class LoraConfig(_Strict):
    r: int = Field(
        8,
        gt=0,
        le=1024,
        description="LoRA rank: the width of the small trainable matrices added to the model. "
        "Higher learns more and needs more memory; 8 to 64 is usual.",
    )
    alpha: int | None = Field(
        None,
        gt=0,
        description="LoRA scaling numerator (the update is scaled by alpha / r); empty = 2 × r.",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        min_length=1,
        description="names of the linear layers that get a LoRA adapter",
    )

    @property
    def scaling_alpha(self) -> int:
        return self.alpha if self.alpha is not None else 2 * self.r


class TrainingRecipe(_Strict):
    """Every hyperparameter of a LoRA/QLoRA fine-tune; the trigger form offers the common ones."""

    backend: Literal["auto", "hf", "unsloth"] = Field(
        "auto",
        description="How the model is trained: unsloth (NVIDIA GPU; fastest, least memory), "
        "hf (transformers + PEFT; runs anywhere, also on CPU) or auto (unsloth when the worker "
        "has a GPU and Unsloth installed, else hf).",
    )
    load_in_4bit: bool = Field(
        False,
        description="Load the base model's weights in 4 bits (QLoRA): about a quarter of the GPU "
        "memory for a small loss in quality. Needs an NVIDIA GPU; on CPU the hf backend loads "
        "full precision and says so.",
    )
    max_seq_length: int = Field(
        512,
        gt=0,
        le=1_048_576,
        description="Longest training example in tokens; longer ones are cut. At most the base "
        "model's context length.",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    learning_rate: float = Field(
        2e-4,
        gt=0.0,
        le=1.0,
        description="Optimizer step size. 1e-4 to 3e-4 is usual for LoRA on real models; too high "
        "and the loss diverges.",
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="how the learning rate changes over the run"
    )
    warmup_ratio: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of the steps spent ramping the learning rate up"
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    num_epochs: float = Field(1.0, gt=0.0, le=1000.0, description="passes over the training data")
    max_steps: int | None = Field(
        None,
        gt=0,
        le=10_000_000,
        description="Stop after this many optimizer steps (wins over num_epochs when set).",
    )
    batch_size: int = Field(
        8,
        gt=0,
        le=4096,
        description="Examples per GPU in each step. Lower it when the GPU runs out of memory "
        "(and raise grad_accum to keep the effective batch).",
    )
    grad_accum: int = Field(
        1,
        gt=0,
        le=4096,
        description="Steps whose gradients are summed before one optimizer update: the effective "
        "batch is batch_size × grad_accum.",
    )
    optim: Literal[
        "adamw_torch_fused", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd"
    ] = Field(
        "adamw_torch_fused",
        description="Optimizer. adamw_8bit and paged_adamw_8bit keep its state in 8 bits "
        "(bitsandbytes, NVIDIA GPU only) to save memory. Always set explicitly: Unsloth would "
        "otherwise switch to adamw_8bit, and a resumed run must use the optimizer it started with.",
    )
    padding_free: bool = Field(
        False,
        description="Pack each batch into one sequence without padding (faster on GPU). Only with "
        "the unsloth backend: the hf backend's attention would mix the packed examples.",
    )
    seed: int = Field(42, ge=0, le=2**32 - 1)
    validation_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="share of train held back for eval loss without eval_file"
    )
    logging_steps: int = Field(5, gt=0, le=1_000_000)
    eval_steps: int = Field(20, gt=0, le=1_000_000, description="evaluate every N steps")
    save_steps: int = Field(
        20, gt=0, le=1_000_000, description="checkpoint every N steps (a multiple of eval_steps)"
    )
    save_total_limit: int = Field(3, gt=0, le=1000)
    early_stopping_patience: int | None = Field(
        3, gt=0, le=1000, description="stop after this many evals without improvement; empty = off"
    )
    export: Literal["adapter", "merged", "gguf"] = Field(
        "adapter",
        description="What the run delivers besides the LoRA adapter: adapter (nothing else), "
        "merged (base + adapter as one 16-bit model) or gguf (one llama.cpp file for llama.cpp "
        "/ Ollama; needs the unsloth backend and llama.cpp on the worker).",
    )
    gguf_quantization: Literal[GGUF_QUANTIZATIONS] = Field(
        "q4_k_m",
        description="llama.cpp quantization of the gguf export: q4_k_m (small, good quality), "
        "q8_0 (twice the size, closer to the original) or f16 (unquantized). Unsloth's own list.",
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> TrainingRecipe:
        # load_best_model_at_end needs every save step to have an eval to compare.
        if self.save_steps % self.eval_steps:
            raise ValueError(
                f"save_steps: {self.save_steps} must be a multiple of "
                f"eval_steps ({self.eval_steps})"
            )
        if self.export == "gguf" and self.backend == "hf":
            raise ValueError(
                "export: gguf is written by Unsloth's save_pretrained_gguf and needs "
                "backend unsloth (or auto on a GPU worker), not hf"
            )
        if self.padding_free and self.backend == "hf":
            raise ValueError(
                "padding_free: needs backend unsloth (or auto on a GPU worker); the hf "
                "backend's attention would mix the examples packed into one sequence"
            )
        return self


class MlflowConfig(_Strict):
    tracking_uri: str | None = Field(
        None,
        description="where the run is recorded; empty = MLflow's MLFLOW_TRACKING_URI environment "
        "variable, which is how a URI holding a password is passed (never written to a file)",
    )
    experiment: str = "modelyard-training"
    artifact_location: str | None = Field(None, description="used when creating the experiment")
    run_name: str | None = None
    run_id: str | None = Field(None, description="continue this run; default: the run dir's")

    def resolved_tracking_uri(self) -> str:
        """The configured URI, else MLflow's own environment variable; one-line error if neither."""
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri:
            raise ConfigError(
                "mlflow.tracking_uri: not set, and MLFLOW_TRACKING_URI is not in the environment"
            )
        return uri


class TrainerConfig(TrainingRecipe):
    base_model: str = Field(min_length=1, description="local path or hub name")
    base_revision: str | None = None
    train_file: str = Field(min_length=1, description="local path, file:// or s3:// URL")
    eval_file: str | None = Field(
        None,
        description="validation data for eval loss and early stopping; default: "
        "validation_fraction of train_file. Never the held-out eval suite.",
    )
    output_dir: Path = Field(description="the run dir: checkpoints, adapter, result.json")
    mirror_dir: str | None = Field(None, description="local path or s3://..., via fsspec")
    data_version: str | None = None
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)

    def recipe(self) -> dict:
        """Base, data version and every hyperparameter: what the model is a function of.

        Where things are written (run dir, mirror, MLflow) and the file paths of the data are
        bookkeeping, not recipe: the same recipe re-run elsewhere (a retry on another worker)
        is the same recipe. Without a data version the data files' paths are all that names
        the data, so they count.
        """
        bookkeeping = {"output_dir", "mirror_dir", "mlflow"}
        if self.data_version:
            bookkeeping |= {"train_file", "eval_file"}
        return self.model_dump(mode="json", exclude=bookkeeping)

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()[:16]


def one_line(err: ValidationError) -> str:
    """A pydantic error as one line that starts with the field it is about."""
    first = err.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a cross-field check: its message already starts with the field
        return msg
    extra = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{'.'.join(str(p) for p in first['loc'])}: {msg}{extra}"


def parse_config(data: dict) -> TrainerConfig:
    try:
        return TrainerConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(one_line(err)) from None


def load_config(path: Path) -> TrainerConfig:
    """Read a JSON or YAML config file and validate it (no model access)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config: cannot read {path}: {err.strerror}") from None
    try:
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as err:  # JSONDecodeError and yaml.YAMLError both derive from it
        raise ConfigError(f"config: {path} is not valid: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of settings")
    return parse_config(data)


# In a run dir once this trainer (``RUN_MARKER``, written first) or its launcher used it.
RUN_MARKER = ".modelyard-run"
_OWN_ENTRIES = {RUN_MARKER, "checkpoints", "mlflow_run.json", "trainer_config.json"}


def check_run_dir(cfg: TrainerConfig) -> None:
    """The run dir is the trainer's: it replaces ``adapter/`` and ``result.json`` there, so a
    directory that holds files and none of a run's (``/``, a home, a dataset) is refused, and
    so is a local ``mirror_dir`` that is or holds it (the mirror removes what it replaces)."""
    out = cfg.output_dir
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir: {out} is a file, not a run directory")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries and not _OWN_ENTRIES.intersection(entries):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise ConfigError(
                f"output_dir: {out} holds {shown}, which no training run wrote; use a new or "
                "empty directory (a run replaces adapter/ and result.json in it)"
            )
    if cfg.mirror_dir and "://" not in cfg.mirror_dir.removeprefix("file://"):
        mirror = Path(cfg.mirror_dir.removeprefix("file://")).resolve()
        run = out.resolve()
        if mirror == run or mirror in run.parents or run in mirror.parents:
            raise ConfigError(
                f"mirror_dir: {cfg.mirror_dir} overlaps output_dir {out}; a mirror is another "
                "place (another disk, s3://...)"
            )


def check_against_model(cfg: TrainerConfig) -> None:
    """Check what needs the base model's config.json (never its weights), the data files and
    the tracking URI: everything that would otherwise fail only after the model loaded. The
    cheap checks come first, transformers (seconds of imports) only for the model's config."""
    from trainer.data import check_file

    cfg.mlflow.resolved_tracking_uri()
    check_run_dir(cfg)
    base = cfg.base_model
    if base.startswith(("/", ".")) and not Path(base).is_dir():
        raise ConfigError(f"base_model: path does not exist: {base}")
    for name in ("train_file", "eval_file"):
        if getattr(cfg, name) is not None:
            check_file(name, getattr(cfg, name))
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(base, revision=cfg.base_revision)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"base_model: cannot read the config of {base!r}: {str(err).splitlines()[0]}"
        ) from None
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit is not None and cfg.max_seq_length > limit:
        raise ConfigError(
            f"max_seq_length: {cfg.max_seq_length} exceeds the model's "
            f"max_position_embeddings ({limit})"
        )
