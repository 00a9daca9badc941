"""The trainer's one typed config, validated before any model weight is read.

Every error is reduced to one line naming the field (``ConfigError``), because the person reading
it is looking at an Airflow task log, not at a pydantic traceback.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A bad config: the message is one line that starts with the offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Strict):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
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
    )


class MlflowConfig(_Strict):
    tracking_uri: str
    experiment: str = "modelyard-training"
    artifact_location: str | None = Field(None, description="used when creating the experiment")
    run_name: str | None = None
    run_id: str | None = Field(None, description="continue this run; default: the run dir's")


class TrainerConfig(_Strict):
    backend: Literal["auto", "hf", "unsloth"] = "auto"
    base_model: str = Field(min_length=1, description="local path or hub name")
    base_revision: str | None = None
    train_file: Path
    eval_file: Path | None = Field(
        None,
        description="validation data for eval loss and early stopping; default: "
        "validation_fraction of train_file. Never the held-out eval suite.",
    )
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    output_dir: Path = Field(description="the run dir: checkpoints, adapter, result.json")
    mirror_dir: str | None = Field(None, description="local path or s3://..., via fsspec")
    data_version: str | None = None
    max_seq_length: int = Field(512, gt=0)
    lora: LoraConfig = LoraConfig()
    load_in_4bit: bool = False
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    num_epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, gt=0, description="wins over num_epochs when set")
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    seed: int = 42
    logging_steps: int = Field(5, gt=0)
    eval_steps: int = Field(20, gt=0)
    save_steps: int = Field(20, gt=0)
    save_total_limit: int = Field(3, gt=0)
    early_stopping_patience: int | None = Field(3, gt=0, description="evals without improvement")
    export: Literal["adapter", "merged", "gguf"] = "adapter"
    gguf_quantization: str = "q4_k_m"
    mlflow: MlflowConfig

    @model_validator(mode="after")
    def _check_intervals(self) -> TrainerConfig:
        # load_best_model_at_end needs every save step to have an eval to compare.
        if self.save_steps % self.eval_steps:
            raise ValueError(
                f"save_steps: {self.save_steps} must be a multiple of "
                f"eval_steps ({self.eval_steps})"
            )
        return self

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


def _one_line(err: ValidationError) -> str:
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
        raise ConfigError(_one_line(err)) from None


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


def check_against_model(cfg: TrainerConfig) -> None:
    """Check what needs the base model's config.json (never its weights) and the data files."""
    from transformers import AutoConfig

    base = cfg.base_model
    if base.startswith(("/", ".")) and not Path(base).is_dir():
        raise ConfigError(f"base_model: path does not exist: {base}")
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
    for name in ("train_file", "eval_file"):
        path = getattr(cfg, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"{name}: file does not exist: {path}")
