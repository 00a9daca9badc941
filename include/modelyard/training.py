"""Airflow-side launcher of the trainer: build its config, run it as a subprocess, get its result.

The trainer runs in its own environment (``settings.training.python``; CUDA torch and Unsloth on
GPU workers), so the two sides share the trainer's schema (``trainer.config``, pydantic only), a
config file, one environment variable (the tracking URI) and ``result.json``. The run dir is
derived from the run name, so an Airflow retry of the same run resumes from the last checkpoint.
This module never imports Airflow: its output goes through ``logging``, which Airflow captures.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelyard.settings import Settings
from modelyard.storage import credential_env, is_remote
from trainer.config import (
    CONFIG_ERROR_EXIT,
    CONFIG_ERROR_PREFIX,
    ConfigError,
    TrainingRecipe,
    parse_config,
)
from trainer.redaction import redact, scrubber

log = logging.getLogger(__name__)

TAIL_LINES = 30
TERMINATE_GRACE_SECONDS = 30
#: MLflow's own variable: how the trainer gets the tracking URI (it may hold a password, so it is
#: never written into the config file).
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
#: Recipe fields on ``finetune_model``'s trigger form, in form order; Param name = the dotted
#: path with ``_`` (``lora.r`` -> ``lora_r``). Types, bounds, choices and descriptions are taken
#: from the trainer's schema.
FORM_FIELDS = (
    "backend",
    "load_in_4bit",
    "lora.r",
    "learning_rate",
    "max_steps",
    "batch_size",
    "grad_accum",
    "max_seq_length",
    "optim",
    "export",
    "gguf_quantization",
)
_SCHEMA_KEYWORDS = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "items",
)


def _param_name(path: str) -> str:
    return path.replace(".", "_")


def _field_schema(schema: dict, path: str) -> dict:
    """The JSON schema of the recipe field at dotted ``path`` (nested models followed by $ref)."""
    node: dict = schema
    for part in path.split("."):
        node = node["properties"][part]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _nullable(field: dict) -> dict:
    """The field's constraints with ``null`` allowed: an empty form field means "the settings
    value", so every Param submits with its default."""
    branches = field.get("anyOf", [field])
    typed = next(b for b in branches if b.get("type") != "null")
    spec = {k: typed[k] for k in _SCHEMA_KEYWORDS if k in typed}
    spec["type"] = ["null", typed["type"]]
    if "enum" in spec:
        spec["enum"] = [None, *spec["enum"]]
    return spec


def _at(data: dict, parts: list[str]) -> Any:
    """``data[parts[0]][parts[1]]...``: a nested value of a dumped recipe."""
    for part in parts:
        data = data[part]
    return data


def trigger_params(settings: Settings) -> dict[str, dict]:
    """Keyword arguments of ``finetune_model``'s ``Param``s, generated from the trainer's schema.

    Plain dicts, so this module stays free of Airflow; the DAG wraps each in ``Param(**spec)``.
    Each description ends with the value an empty field stands for (the current settings).
    """
    schema = TrainingRecipe.model_json_schema()
    recipe = settings.training.recipe.model_dump(mode="json")
    params = {
        "dataset_version": {
            "default": None,
            "type": ["null", "string"],
            "description": "Published dataset version (ds- and 12 hex digits, e.g. "
            "ds-3f2a9c01b7de) whose date ends the training snapshot: the model trains on every "
            "published version up to that date. Empty: up to the latest published date.",
        },
        "base_model": {
            "default": None,
            "type": ["null", "string"],
            "description": "Base model to fine-tune: a local path or a Hugging Face hub name. "
            f"Empty: {settings.default_base_model}.",
        },
    }
    for path in FORM_FIELDS:
        field = _field_schema(schema, path)
        current = _at(recipe, path.split("."))
        spec = {"default": None, **_nullable(field)}
        spec["description"] = (
            f"{field['description'].rstrip('.')}. Empty: the settings value, {json.dumps(current)}."
        )
        if "enum" in spec:  # the drop-down names its empty choice (the UI looks labels up by str)
            labels = {str(v): str(v) for v in spec["enum"] if v is not None}
            spec["values_display"] = {"null": f"settings value: {current}", **labels}
        params[_param_name(path)] = spec
    return params


def _recipe_with(params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The settings' recipe with every non-empty Param of ``FORM_FIELDS`` put in its place."""
    recipe = settings.training.recipe.model_dump(mode="json")
    for path in FORM_FIELDS:
        value = params.get(_param_name(path))
        if value is not None:
            *parents, leaf = path.split(".")
            _at(recipe, parents)[leaf] = value
    return recipe


def build_trainer_config(
    params: dict[str, Any], dataset: dict[str, Any], run_name: str, settings: Settings
) -> dict[str, Any]:
    """The trainer config of one DAG run, validated by the trainer's own ``TrainerConfig``.

    ``params`` are the DAG Params (``None``: the settings value); ``dataset`` is the published
    version's manifest with its ``path`` (a local path or a storage URL). With remote storage
    (s3://...) the trainer works in a local run dir under ``home`` and mirrors checkpoints and
    results to ``<storage>/runs/<run_name>``. The tracking URI is not part of it: it reaches
    the trainer through ``TRACKING_URI_ENV`` (see ``run_trainer``). Raises ``ConfigError``
    (one line naming the field) on a bad Param.
    """
    run_dir = f"{settings.storage.rstrip('/')}/runs/{run_name}"
    output_dir, mirror_dir = run_dir, None
    if is_remote(run_dir):
        output_dir, mirror_dir = str(settings.home / "runs" / run_name), run_dir
    config = parse_config(
        {
            **_recipe_with(params, settings),
            "base_model": params.get("base_model") or settings.default_base_model,
            # No eval_file: the trainer validates on a slice of train. The held-out split belongs
            # to the eval suite and never steers training (not even early stopping).
            "train_file": f"{str(dataset['path']).rstrip('/')}/train.jsonl",
            "output_dir": output_dir,
            "mirror_dir": mirror_dir,
            "data_version": dataset.get("version"),
            "mlflow": {
                "experiment": settings.training.experiment,
                "run_name": run_name,
                "artifact_location": settings.artifact_root,
            },
        }
    )
    return config.model_dump(mode="json")


def _trainer_python(settings: Settings) -> str:
    return settings.training.python or sys.executable


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the trainer (HF Trainer stops between steps), SIGKILL it after a grace period."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def _forward_sigterm(proc: subprocess.Popen) -> Iterator[None]:
    """While the trainer runs, SIGTERM to this task stops the trainer first, then acts as before."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        log.warning("SIGTERM received: stopping the trainer (pid %d)", proc.pid)
        _stop(proc)
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:  # default disposition: die of the same signal, as if no handler had been here
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fields_with_secrets(data: Any, prefix: str = "") -> list[str]:
    """Dotted names of the values in ``data`` that hold a credential (see ``redact``)."""
    if isinstance(data, dict):
        return [f for k, v in data.items() for f in _fields_with_secrets(v, f"{prefix}{k}.")]
    if isinstance(data, list):
        return [f for v in data for f in _fields_with_secrets(v, prefix)]
    return [prefix.rstrip(".")] if isinstance(data, str) and redact(data) != data else []


def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600: run configs describe the run to its owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)  # an older tmp file keeps its mode through O_CREAT
    os.replace(tmp, path)


def run_trainer(config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Run ``python -m trainer`` on ``config``, streaming its output to the log; return result.json.

    The config is validated by the trainer's schema before anything starts (``ConfigError``)
    and written without the tracking URI (mode 0600): the URI, which may hold a database
    password, goes to the trainer in ``TRACKING_URI_ENV``, and every output line is scrubbed of
    its secrets before it is logged. Any other field holding a credential is refused.
    Raises ``RuntimeError`` with the last (scrubbed) lines of output when the trainer fails.
    """
    validated = parse_config(config)
    if validated.mirror_dir:
        # The plan was made on another worker: a mirrored run's local dir is this worker's
        # (its own home), where a retry on a fresh machine finds nothing and restores from
        # the mirror. Not part of the recipe hash.
        validated.output_dir = settings.home / "runs" / validated.output_dir.name
    tracking_uri = validated.mlflow.tracking_uri or settings.tracking_uri
    validated.mlflow.tracking_uri = None  # the trainer reads it from TRACKING_URI_ENV
    written = validated.model_dump(mode="json")
    leaked = _fields_with_secrets(written)
    if leaked:
        raise ConfigError(
            f"{leaked[0]}: holds a credential; pass credentials through the environment "
            "(the trainer config is a file and is logged as an MLflow artifact)"
        )
    run_dir = validated.output_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "trainer_config.json"
    _write_private(config_file, json.dumps(written, indent=2))

    cmd = [_trainer_python(settings), "-m", "trainer", "--config", str(config_file)]
    # The trainer's MLflow client gets the same bounded HTTP timeouts/retries as the library's
    # (imported here: the DAG file imports this module at parse time, mlflow must not load then).
    from modelyard.registry.connection import mlflow_http_env

    env = {
        **os.environ,
        **credential_env(settings),  # storage credentials from an Airflow connection, if any
        **mlflow_http_env(settings),
        "PYTHONUNBUFFERED": "1",
        TRACKING_URI_ENV: tracking_uri,
    }
    scrub = scrubber(tracking_uri, settings.tracking_uri, settings.storage)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    # Text mode turns tqdm's carriage returns into line ends, so progress shows up line by line.
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
    except OSError as err:  # a training.python that is not there or not executable
        raise RuntimeError(f"cannot start the trainer with {cmd[0]}: {err.strerror}") from err
    log.info("started trainer (pid %d): %s", proc.pid, " ".join(cmd))
    try:
        with _forward_sigterm(proc):
            assert proc.stdout is not None
            for line in proc.stdout:
                line = scrub(line.rstrip())
                if line:
                    tail.append(line)
                    log.info("%s", line)
            returncode = proc.wait()
    finally:
        _stop(proc)  # an exception here (e.g. Airflow's execution timeout) must not orphan it
    config_errors = [line for line in tail if line.startswith(CONFIG_ERROR_PREFIX)]
    if returncode == CONFIG_ERROR_EXIT and config_errors:  # deterministic: a retry fails alike
        raise ConfigError(config_errors[-1].removeprefix(CONFIG_ERROR_PREFIX))
    if returncode != 0:
        raise RuntimeError(
            f"trainer exited with code {returncode}; last output:\n" + "\n".join(tail)
        )
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    if validated.mirror_dir:  # evaluate/register may run on another machine: they read this
        result["adapter_uri"] = f"{validated.mirror_dir.rstrip('/')}/adapter"
    return result
