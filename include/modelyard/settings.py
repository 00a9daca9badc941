"""One typed settings object for the whole library.

Every knob lives here (env prefix ``MODELYARD_``, nested with ``__``), so a newcomer finds
"where is the near-dup threshold" in one guess: ``Settings.curation.near_dup_threshold``.
The embedded defaults need no configuration: everything lives under ``./.local``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CurationSettings(BaseModel):
    """Thresholds of the curation stage (see ``modelyard.curation``).

    Unknown keys are refused (a misspelled knob must not be silently ignored) and every number
    is bounded: a value outside its bounds is a one-line error naming the field.
    """

    model_config = ConfigDict(extra="forbid")

    min_prompt_chars: int = Field(1, ge=0, description="shorter prompts are rejected (quality)")
    min_completion_chars: int = Field(1, ge=0, description="shorter completions: quality")
    max_record_chars: int = Field(20_000, gt=0, description="longer prompt+completion: quality")
    max_repetition_ratio: float = Field(0.5, ge=0.0, le=1.0, description="repeated n-gram share")
    max_symbol_ratio: float = Field(0.35, ge=0.0, le=1.0, description="non-letter/digit share")
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0, description="word 5-gram Jaccard")
    near_dup_ngram: int = Field(5, ge=1, le=64, description="words per near-dup shingle")
    minhash_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    eval_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: str = Field("modelyard-split-v1", min_length=1)
    contamination_ngram: int = Field(13, ge=1, le=64, description="words per contamination gram")
    contamination_min_overlap: float = Field(
        0.5, gt=0.0, le=1.0, description="share of a record's n-grams found in held-out data"
    )
    quality_classifier: bool = False
    quality_threshold: float = Field(0.5, ge=0.0, le=1.0)
    batch_size: int = Field(4096, gt=0, le=1_000_000, description="records per vectorised batch")
    # 2: measured fastest on the 2-core target (bench/curation.py); the output is the same
    # for any value, and small partitions (one batch) and daemonic hosts stay in-process.
    workers: int = Field(2, ge=1, le=64, description="processes preparing batches (1 = in-process)")
    max_line_bytes: int = Field(
        16 << 20, ge=1024, description="longer raw lines are rejected whole (oversized)"
    )
    quarantine_days: int = Field(
        30,
        ge=0,
        le=3650,
        description="days the raw text of rejected lines is kept under <storage>/quarantine "
        "(0600 files, outside every dataset version); 0 = never kept",
    )
    split_tolerance: float = Field(0.05, ge=0.0, le=1.0, description="GX gate: eval share slack")
    # A gate row is ~80 bytes of derived columns, not the record's text: 200k rows ~16 MB.
    gate_batch_rows: int = Field(
        200_000, gt=0, description="GX gate: records validated per GX batch (bounds its memory)"
    )


class TrainingSettings(BaseModel):
    """Defaults the ``finetune_model`` DAG offers as Params."""

    backend: str = "auto"
    # Tuned on the tiny model: 100 LoRA steps take it from eval loss ~7 to < 1 on CPU.
    max_steps: int = 100
    learning_rate: float = 5e-3
    lora_r: int = 16
    max_seq_length: int = 256
    eval_steps: int = 20
    save_steps: int = 20
    early_stopping_patience: int = 3
    experiment: str = "modelyard-finetune"
    python: str = Field("", description="interpreter of the trainer env; empty = this one")
    timeout_minutes: int = 240


class MetricThreshold(BaseModel):
    """One metric's bar, shaped like MLflow's ``MetricThreshold`` (see ``evaluation.gate``).

    ``threshold`` is a floor (a ceiling when lower is better). The change bars compare with the
    incumbent in the metric's better direction: a positive value is a required gain, a negative one
    the largest regression tolerated; relative changes are fractions of the incumbent's value.
    """

    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool = True


class GateSettings(BaseModel):
    """Offline gate and eval-suite defaults: nothing is approved without thresholds.

    A registered model may override any field with a registered-model tag ``modelyard.gate``
    holding a JSON object (merged over these values), so each model carries its own bar.
    """

    primary_metric: str = "rouge_l"
    thresholds: dict[str, MetricThreshold] = Field(
        default_factory=lambda: {
            "rouge_l": MetricThreshold(threshold=0.3, min_absolute_change=0.0),
            "format_validity": MetricThreshold(threshold=0.5),
            "exact_match": MetricThreshold(min_absolute_change=-0.05),
        }
    )
    leak_ngram: int = Field(8, ge=1, description="word n-gram size of the independent leak check")
    leak_coverage: float = Field(
        0.8, gt=0.0, le=1.0, description="share of a suite record's n-grams in train = leak"
    )
    suite_metrics: list[str] = Field(
        default_factory=lambda: ["exact_match", "rouge_l", "bleu", "format_validity"],
        description="shipped metric names or paths of metric modules, frozen into new suites",
    )
    json_schema: dict | None = Field(
        default_factory=lambda: {
            "type": "object",
            "required": ["name", "job", "city"],
            "properties": {k: {"type": "string"} for k in ("name", "job", "city")},
        },
        description="schema format_validity checks, frozen into new suites",
    )
    max_new_tokens: int = 48
    eval_batch_size: int = 16
    require_human_approval: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELYARD_", env_nested_delimiter="__")

    home: Path = Field(Path(".local").resolve(), description="root of the embedded default")
    storage_root: str = Field(
        "", description="local path or s3://bucket/prefix; default <home>/data"
    )
    mlflow_tracking_uri: str = Field("", description="default sqlite:///<home>/mlflow/mlflow.db")
    mlflow_artifact_root: str = Field("", description="default <home>/mlflow/artifacts")
    registered_model: str = "modelyard-assistant"
    base_model: str = Field("", description="path or hub name; default the tiny model under <home>")
    curation: CurationSettings = CurationSettings()
    training: TrainingSettings = TrainingSettings()
    gate: GateSettings = GateSettings()

    @property
    def storage(self) -> str:
        return self.storage_root or str(self.home / "data")

    @property
    def storage_path(self) -> Path:
        """The storage root as a local path (the embedded default and tests)."""
        return Path(self.storage)

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return self.mlflow_artifact_root or str(self.home / "mlflow" / "artifacts")

    @property
    def default_base_model(self) -> str:
        return self.base_model or str(self.home / "models" / "tiny-llama")


@lru_cache
def get_settings() -> Settings:
    return Settings()
