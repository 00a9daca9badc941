"""A model version as stored: an MLflow model directory holding only the adapter.

The directory has an ``MLmodel`` file with a ``modelyard_peft`` flavor naming the base model and
revision, and ``adapter/`` (safetensors weights, adapter config, tokenizer). Shipping the base
again with every version would multiply storage by the base size for a few MB of LoRA weights.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.models import Model

from modelyard.registry.connection import configure_http
from modelyard.settings import Settings

FLAVOR = "modelyard_peft"
MODEL_PATH = "model"


def client_for(settings: Settings) -> MlflowClient:
    """The one place clients are built: MLflow's HTTP timeout/retries come from the settings."""
    configure_http(settings)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def load_causal_lm(
    base_model: str, base_revision: str | None = None, adapter_dir: str | None = None
):
    """Base model (+ PEFT adapter) in eval mode, and the adapter's tokenizer (else the base's)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    revision = None if Path(base_model).exists() else base_revision
    model = AutoModelForCausalLM.from_pretrained(base_model, revision=revision)
    if adapter_dir:
        model = PeftModel.from_pretrained(model, adapter_dir)
    has_tokenizer = adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").exists()
    tokenizer = (
        AutoTokenizer.from_pretrained(adapter_dir)
        if has_tokenizer
        else AutoTokenizer.from_pretrained(base_model, revision=revision)
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def log_model_dir(
    client: MlflowClient, run_id: str, adapter_dir: str, base_model: str, base_revision: str | None
) -> str:
    """Log the adapter as an MLflow model directory into the run; returns its artifact URI."""
    import peft
    import transformers

    adapter = Path(adapter_dir)
    if not (adapter / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"{adapter} has no adapter_model.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(adapter, Path(tmp) / "adapter")
        mlmodel = Model(run_id=run_id, artifact_path=MODEL_PATH)
        mlmodel.add_flavor(
            FLAVOR,
            base_model=base_model,
            base_revision=base_revision,
            adapter="adapter",
            peft_version=peft.__version__,
            transformers_version=transformers.__version__,
        )
        mlmodel.save(str(Path(tmp) / "MLmodel"))
        client.log_artifacts(run_id, tmp, MODEL_PATH)
    return f"{client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"


def resolve_version(client: MlflowClient, name: str, alias_or_version: str | int):
    """A model version by number ("3", 3) or alias ("production")."""
    ref = str(alias_or_version)
    if ref.isdigit():
        return client.get_model_version(name, ref)
    return client.get_model_version_by_alias(name, ref)


def load_model(settings: Settings, alias_or_version: str | int):
    """(model, tokenizer) of a registered version, downloaded through MLflow, adapter applied."""
    client = client_for(settings)
    version = resolve_version(client, settings.registered_model, alias_or_version)
    source = client.get_model_version_download_uri(settings.registered_model, version.version)
    # Versions are immutable, so one local copy per version serves every later load.
    dst = Path(settings.home, "cache", "models", settings.registered_model, str(version.version))
    if not (dst / MODEL_PATH / "MLmodel").exists():
        dst.mkdir(parents=True, exist_ok=True)
        download_artifacts(
            artifact_uri=source, dst_path=str(dst), tracking_uri=settings.tracking_uri
        )
    local = dst / MODEL_PATH
    flavor = Model.load(str(local / "MLmodel")).flavors[FLAVOR]
    return load_causal_lm(
        flavor["base_model"], flavor.get("base_revision"), str(local / flavor["adapter"])
    )
