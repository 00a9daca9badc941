"""One typed settings object for the whole library.

Every knob lives here (env prefix ``MODELYARD_``, nested with ``__``), so a newcomer finds
"where is the near-dup threshold" in one guess: ``Settings.curation.near_dup_threshold``.
The embedded defaults need no configuration: everything lives under the home,
``MODELYARD_HOME`` or ``<project root>/.local`` (never the working directory).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# The trainer's schema (pydantic only; the trainer package is installed next to the library).
from trainer.config import LoraConfig, TrainingRecipe

#: The checkout this code runs from (``include/modelyard/settings.py`` -> the project root).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """Settings that cannot be used; the message is one line naming the field and the source."""


class _Section(BaseModel):
    """A settings section: a misspelled key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class CurationSettings(_Section):
    """Thresholds of the curation stage (see ``modelyard.curation``).

    Unknown keys are refused (a misspelled knob must not be silently ignored) and every number
    is bounded: a value outside its bounds is a one-line error naming the field.
    """

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


def _merged(base: dict, override: dict) -> dict:
    """``override`` over ``base``, nested mappings merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _tiny_model_recipe() -> TrainingRecipe:
    # Tuned on the tiny model: 100 LoRA steps take it from eval loss ~7 to < 1 on CPU.
    return TrainingRecipe(
        learning_rate=5e-3,
        max_steps=100,
        lora=LoraConfig(r=16),
        max_seq_length=256,
        eval_steps=20,
        save_steps=20,
        early_stopping_patience=3,
    )


class TrainingSettings(_Section):
    """How ``finetune_model`` trains: the trainer's own recipe schema, and where it runs.

    ``recipe`` is the trainer's ``TrainingRecipe`` (types, bounds and descriptions live there
    once); the DAG's Params override its fields per run, e.g.
    ``MODELYARD_TRAINING__RECIPE__LEARNING_RATE=2e-4`` changes the default.
    """

    recipe: TrainingRecipe = Field(default_factory=_tiny_model_recipe)
    experiment: str = "modelyard-finetune"
    python: str = Field("", description="interpreter of the trainer env; empty = this one")
    timeout_minutes: int = Field(240, gt=0, le=7 * 24 * 60)
    snapshot_window_days: int | None = Field(
        None,
        ge=1,
        le=36_500,
        description="a model trains on the published versions of this many days up to the "
        "triggering date (that day included); None = every published day up to it",
    )

    @field_validator("recipe", mode="before")
    @classmethod
    def _over_default_recipe(cls, value: object) -> object:
        """A partial recipe (one ``MODELYARD_TRAINING__RECIPE__...`` variable, or a config file
        naming a few fields) changes those fields of the default recipe, not all the others."""
        if not isinstance(value, dict):
            return value
        return _merged(_tiny_model_recipe().model_dump(), value)


class MetricThreshold(_Section):
    """One metric's bar, shaped like MLflow's ``MetricThreshold`` (see ``evaluation.gate``).

    ``threshold`` is a floor (a ceiling when lower is better). The change bars compare with the
    incumbent in the metric's better direction: a positive value is a required gain, a negative one
    the largest regression tolerated; relative changes are fractions of the incumbent's value.
    """

    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool = True


class GateSettings(_Section):
    """Offline gate and eval-suite defaults: nothing is approved without thresholds.

    A registered model may override any field with a registered-model tag ``modelyard.gate``
    holding a JSON object (merged over these values), so each model carries its own bar.
    Human approval is not a gate field: it is ``promotion.require_human_approval``, which no
    per-model tag can turn off.
    """

    @model_validator(mode="before")
    @classmethod
    def _no_approval_here(cls, data: object) -> object:
        if isinstance(data, dict) and "require_human_approval" in data:
            raise ValueError(
                "require_human_approval is not a gate setting: human approval is "
                "promotion.require_human_approval (MODELYARD_PROMOTION__REQUIRE_HUMAN_APPROVAL), "
                "set for the whole registry and never per model"
            )
        return data

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
    max_new_tokens: int = Field(48, gt=0, le=4096)
    eval_batch_size: int = Field(16, gt=0, le=1024)


class PromotionSettings(_Section):
    """Who may move a version into production (see ``modelyard.registry.approval``).

    Registry-wide on purpose: a per-model tag can tighten the gate, never skip a human.
    """

    require_human_approval: bool = Field(
        False,
        description="production needs a recorded approval of that version by another person",
    )
    auto_canary: bool = Field(
        True, description="a version that passed the gate moves staging -> canary on its own"
    )
    first_to_production: bool = Field(
        True,
        description="with auto_canary and nothing in production yet, the first version that "
        "passed the gate continues canary -> production (a canary needs a live incumbent to "
        "be compared with; this one was compared with the base model offline)",
    )


class RegistrySettings(_Section):
    """Reaching the MLflow tracking store, and the lock every alias transition holds.

    The ``http_*`` values are MLflow's own client knobs (``MLFLOW_HTTP_REQUEST_TIMEOUT``,
    ``_MAX_RETRIES``, ``_BACKOFF_FACTOR``), applied where clients are built
    (``modelyard.registry.connection``). MLflow's defaults (120 s, 7 retries, factor 2) make an
    unreachable server a 4-minute silence; these fail in seconds and still ride out a blip.
    """

    http_timeout_seconds: int = Field(
        15, ge=1, le=600, description="per request to the tracking server (and lock backends)"
    )
    http_max_retries: int = Field(2, ge=0, le=10, description="retries of a failed request")
    http_backoff_factor: int = Field(
        1, ge=0, le=120, description="seconds; retry n waits factor * 2**(n-1)"
    )
    lock_url: str = Field(
        "",
        description="shared transition lock: postgresql://... (advisory lock), redis://... "
        "(lease lock), file:///dir (one host only); empty = the tracking store's own "
        "(Postgres advisory lock, or a file lock beside a local store); required with http://",
    )
    lock_namespace: str = Field(
        "modelyard",
        min_length=1,
        max_length=100,
        description="prefix of the lock's key, to share one Redis/Postgres between deployments",
    )
    lock_wait_seconds: float = Field(
        60.0, gt=0, le=3600, description="give up waiting for another transition after this"
    )
    lock_lease_seconds: float = Field(
        120.0, ge=5, le=3600, description="Redis lease: a crashed holder frees the lock after it"
    )


class UISettings(_Section):
    """The Airflow UI side: links the registry page draws, the account the CLI drives Airflow as."""

    mlflow_ui_url: str = Field(
        "",
        pattern=r"^(https?://\S+)?$",
        description="MLflow UI base URL (`make mlflow-ui`: http://localhost:5000) the registry "
        "page links model versions to; empty = no MLflow links",
    )
    airflow_user: str = Field(
        "admin",
        min_length=1,
        description="Airflow user `modelyard backfill` logs in as (the embedded SimpleAuthManager; "
        "its password is read from the Airflow home)",
    )


class FeedbackSettings(_Section):
    """What ``harvest_feedback`` turns from the request log into raw training records.

    Only stored requests (never ``"store": false``) of the registered model are read; a
    rated-down answer without a correction is counted in the harvest report, never harvested.
    """

    enabled: bool = Field(
        True,
        description="harvest feedback, and make curate_dataset wait for the harvest of a date "
        "the request log holds feedback for; false = curation never waits",
    )
    include_thumbs_up: bool = Field(
        True, description="a rated-up answer becomes a record: the prompt and the answer served"
    )
    include_corrections: bool = Field(
        True, description="an answer with a correction becomes a record: the prompt and it"
    )
    require_valid_format: bool = Field(
        False,
        description="harvest a rated-up answer only if it passed the eval suite's format check",
    )


class NotifySettings(_Section):
    """Who hears about a refused candidate and a rollback (``modelyard.notify``).

    Both are Airflow notifiers run from the task's callback: a JSON POST to ``webhook_url``,
    and/or any ``BaseNotifier`` subclass named by ``notifier`` (e.g. a provider's Slack or
    SMTP notifier) built with ``notifier_kwargs``. Empty: nobody is alerted.
    """

    webhook_url: str = Field(
        "", pattern=r"^(https?://\S+)?$", description="JSON POST on a refusal or rollback"
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=300)
    notifier: str = Field(
        "",
        pattern=r"^([A-Za-z_][A-Za-z0-9_]*\.)+[A-Za-z_][A-Za-z0-9_]*$|^$",
        description="dotted path of an Airflow BaseNotifier subclass, e.g. "
        "airflow.providers.slack.notifications.slack.SlackNotifier",
    )
    notifier_kwargs: dict = Field(default_factory=dict, description="arguments of `notifier`")


def find_home() -> Path:
    """``<project root>/.local`` when this code runs from a modelyard checkout.

    Never the working directory: a command run elsewhere would otherwise look at (and create)
    an empty store there and report a registered model as missing. An installed package (no
    checkout around it) has no default: ``MODELYARD_HOME`` must say where the home is.
    """
    if (PROJECT_ROOT / "dags").is_dir() and (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / ".local"
    raise SettingsError(
        "MODELYARD_HOME is not set and this modelyard is not running from a project checkout "
        f"({PROJECT_ROOT}): set MODELYARD_HOME to the directory that holds the embedded stores"
    )


class ServingSettings(BaseModel):
    """The serving gateway (``modelyard serve``, see ``modelyard.serving``)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address ``modelyard serve`` listens on")
    port: int = Field(8000, ge=1, le=65535, description="port ``modelyard serve`` listens on")
    backend: Literal["local", "openai"] = Field(
        "local",
        description="local: transformers + PEFT in this process; openai: an upstream "
        "OpenAI-compatible server with runtime LoRA loading (vLLM)",
    )
    upstream_url: str = Field("", description="openai backend: base URL, e.g. http://host:8001")
    upstream_api_key: SecretStr = Field(
        SecretStr(""), description="openai backend: bearer token, if any (vLLM's --api-key)"
    )
    upstream_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    canary_share: float = Field(
        0.1, ge=0.0, le=1.0, description="share of users routed to the canary version"
    )
    user_salt: str = Field(
        "",
        description="salt of the user hash that routing and the log use; empty: a random one "
        "made once in <home>/serving/user_salt. Gateways on several homes set one value",
    )
    poll_seconds: float = Field(
        5.0, gt=0, le=3600, description="how often the gateway reads the registry aliases"
    )
    load_retry_seconds: float = Field(
        60.0, ge=0, le=86_400, description="wait before retrying a version that failed to load"
    )
    drain_seconds: float = Field(
        30.0, ge=0, le=3600, description="how long a replaced version may finish its requests"
    )
    runtime_lora_updates: bool = Field(
        False,
        description="expose vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter, so this "
        "gateway can be another gateway's upstream (vLLM's VLLM_ALLOW_RUNTIME_LORA_UPDATING)",
    )
    default_temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="when a request names none; 0 = greedy"
    )
    default_max_tokens: int = Field(64, ge=1, le=32_768, description="when a request names none")
    max_tokens_limit: int = Field(512, ge=1, le=32_768, description="largest max_tokens accepted")
    log_url: str = Field(
        "", description="request log database (SQLAlchemy URL); default SQLite under <home>/serving"
    )
    log_flush_seconds: float = Field(
        0.25, gt=0, le=60, description="the log writer commits at least this often"
    )
    log_batch_size: int = Field(1000, ge=1, le=100_000, description="rows per log commit at most")
    log_queue_size: int = Field(
        100_000, ge=1, le=10_000_000, description="log entries waiting; beyond it they are dropped"
    )

    @model_validator(mode="after")
    def _default_within_limit(self) -> ServingSettings:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) is above max_tokens_limit "
                f"({self.max_tokens_limit})"
            )
        return self


class CanaryMetric(_Section):
    """How one live metric is judged (see ``modelyard.canary.analysis``)."""

    critical: bool = Field(True, description="a fail rolls the canary back; all must pass")
    min_samples: int = Field(
        30,
        ge=1,
        le=10_000_000,
        description="per arm: fewer requests (or ratings) = not enough data",
    )
    tolerance: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="worse by at most this much is still a pass: an absolute rate difference, "
        "or for latency a fraction of production's (0.2 = up to 20 % slower)",
    )


def _canary_metrics() -> dict[str, CanaryMetric]:
    return {
        "error_rate": CanaryMetric(tolerance=0.01),
        "format_validity": CanaryMetric(tolerance=0.02),
        # Users rate a minority of answers, so fewer samples; a secondary signal by default.
        "thumbs_up": CanaryMetric(critical=False, min_samples=20, tolerance=0.05),
        "latency": CanaryMetric(critical=False, tolerance=0.2),
    }


class CanarySettings(_Section):
    """The scheduled canary analysis (DAG ``canary_analysis``, ``modelyard.canary``).

    Kayenta/Flagger-shaped: once both arms have ``min_samples`` requests a metric is judged
    with a one-sided test at ``alpha``; a critical fail rolls back at once, a promotion waits
    for ``bake_minutes``. Past ``max_bake_minutes`` without a verdict, ``on_timeout`` decides.
    """

    schedule: str = Field("*/15 * * * *", min_length=1, description="cron of canary_analysis")
    bake_minutes: float = Field(
        30.0, ge=0.0, le=30 * 24 * 60, description="a canary is promoted no earlier than this"
    )
    max_bake_minutes: float = Field(
        24 * 60.0, gt=0.0, le=90 * 24 * 60, description="then on_timeout decides"
    )
    on_timeout: Literal["rollback", "promote", "wait"] = Field(
        "rollback",
        description="past max_bake_minutes with critical metrics still short of data: a canary "
        "nobody uses proves nothing, so the default takes it out",
    )
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="significance of a fail (one-sided)")
    metrics: dict[
        Literal["error_rate", "format_validity", "thumbs_up", "latency"], CanaryMetric
    ] = Field(default_factory=_canary_metrics)

    @field_validator("metrics", mode="before")
    @classmethod
    def _over_defaults(cls, value: object) -> object:
        """One knob set (``MODELYARD_CANARY__METRICS__LATENCY__TOLERANCE``) keeps the others."""
        if not isinstance(value, dict):
            return value
        merged: dict[str, object] = {k: v.model_dump() for k, v in _canary_metrics().items()}
        for name, spec in value.items():
            base = merged.get(name, {})
            if isinstance(spec, CanaryMetric):
                spec = spec.model_dump()
            merged[name] = {**base, **spec} if isinstance(spec, dict) else spec
        return merged

    @model_validator(mode="after")
    def _bake_within_max(self) -> CanarySettings:
        if self.bake_minutes > self.max_bake_minutes:
            raise ValueError(
                f"bake_minutes ({self.bake_minutes}) is above max_bake_minutes "
                f"({self.max_bake_minutes})"
            )
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(
        default_factory=find_home,
        description="root of the embedded default: MODELYARD_HOME, else <project root>/.local",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    storage_root: str = Field(
        "", description="local path, file:// or s3://bucket/prefix; default <home>/data"
    )
    storage_aws_conn_id: str = Field(
        "",
        description="Airflow AWS connection with the S3 credentials and endpoint of an s3:// "
        "root; empty: the environment's (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)",
    )
    mlflow_tracking_uri: str = Field("", description="default sqlite:///<home>/mlflow/mlflow.db")
    mlflow_artifact_root: str = Field("", description="default <home>/mlflow/artifacts")
    registered_model: str = "modelyard-assistant"
    base_model: str = Field("", description="path or hub name; default the tiny model under <home>")
    curation: CurationSettings = CurationSettings()
    training: TrainingSettings = TrainingSettings()
    gate: GateSettings = GateSettings()
    promotion: PromotionSettings = PromotionSettings()
    registry: RegistrySettings = RegistrySettings()
    ui: UISettings = UISettings()
    notify: NotifySettings = NotifySettings()
    serving: ServingSettings = ServingSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    canary: CanarySettings = CanarySettings()

    @property
    def storage(self) -> str:
        return self.storage_root or str(self.home / "data")

    @property
    def storage_path(self) -> Path:
        """The storage root as a local path (the embedded default and tests)."""
        return Path(self.storage)

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _installed_postgres_driver(cls, uri: str) -> str:
        """``postgresql://`` names psycopg 3 to SQLAlchemy 2.1 ("No module named 'psycopg'");
        the driver modelyard installs is psycopg2, so the bare scheme means that one."""
        scheme, sep, rest = uri.partition("://")
        return (
            f"postgresql+psycopg2://{rest}" if sep and scheme in ("postgresql", "postgres") else uri
        )

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return self.mlflow_artifact_root or str(self.home / "mlflow" / "artifacts")

    @property
    def default_base_model(self) -> str:
        return self.base_model or str(self.home / "models" / "tiny-llama")


def one_line(err: ValidationError, source: str = "settings") -> str:
    """A pydantic error as one line: ``<source>: <field>: <problem> (+N more)``."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {where}: {first['msg'].removeprefix('Value error, ')}{more}"


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment (``MODELYARD_*``); one-line ``SettingsError`` if bad."""
    try:
        return Settings()
    except ValidationError as err:
        raise SettingsError(one_line(err, "settings (MODELYARD_* environment)")) from None
