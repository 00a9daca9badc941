"""A model version as stored: an MLflow model directory holding only the adapter.

The directory has an ``MLmodel`` file with a ``modelyard_peft`` flavor naming the base model and
revision, and the adapter (safetensors weights, adapter config, tokenizer) under the path the
flavor names. Shipping the base again with every version would multiply storage by the base size
for a few MB of LoRA weights. Each version also carries MLflow's ``python_function`` flavor over
the same adapter (``modelyard.serving.pyfunc``), so ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` work on it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.models import Model

from modelyard.registry.connection import configure_http, ensure_store_created
from modelyard.settings import Settings

FLAVOR = "modelyard_peft"
MODEL_PATH = "model"


def client_for(settings: Settings) -> MlflowClient:
    """The one place clients are built: MLflow's HTTP timeout/retries come from the settings."""
    configure_http(settings)
    ensure_store_created(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def load_causal_lm(
    base_model: str, base_revision: str | None = None, adapter_dir: str | None = None
):
    """Base model (+ PEFT adapter) in eval mode, and the adapter's tokenizer (else the base's)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # The "Loading weights" bar is tqdm on stderr, which Airflow logs at ERROR level in a
    # task that succeeds; a library loading models has no terminal to draw it on.
    hf_logging.disable_progress_bar()
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
    from modelyard.serving.pyfunc import save_pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / MODEL_PATH
        mlmodel = Model(run_id=run_id, artifact_path=MODEL_PATH)
        stored = save_pyfunc(local, mlmodel, adapter, base_model, base_revision)
        mlmodel.add_flavor(
            FLAVOR,
            base_model=base_model,
            base_revision=base_revision,
            adapter=stored,  # the pyfunc flavor's copy: one adapter serves both flavors
            peft_version=peft.__version__,
            transformers_version=transformers.__version__,
        )
        mlmodel.save(str(local / "MLmodel"))
        client.log_artifacts(run_id, str(local), MODEL_PATH)
    return f"{client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"


def resolve_version(client: MlflowClient, name: str, alias_or_version: str | int):
    """A model version by number ("3", 3) or alias ("production")."""
    ref = str(alias_or_version)
    if ref.isdigit():
        return client.get_model_version(name, ref)
    return client.get_model_version_by_alias(name, ref)


def local_model_dir(settings: Settings, version: str) -> Path:
    """The version's MLflow model directory on local disk, downloaded on first use.

    Versions are immutable, so one local copy per version serves every later load. The copy is
    downloaded beside it and renamed into place, so a reader (another process too) never sees
    half of one.
    """
    dst = Path(settings.home, "cache", "models", settings.registered_model, str(version))
    if (dst / MODEL_PATH / "MLmodel").exists():
        return dst / MODEL_PATH
    client = client_for(settings)
    source = client.get_model_version_download_uri(settings.registered_model, str(version))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}-"))
    try:
        download_artifacts(
            artifact_uri=source, dst_path=str(tmp), tracking_uri=settings.tracking_uri
        )
        if dst.exists() and not (dst / MODEL_PATH / "MLmodel").exists():
            shutil.rmtree(dst)  # an incomplete copy from before downloads were renamed in
        tmp.rename(dst)
    except OSError:
        if not (dst / MODEL_PATH / "MLmodel").exists():  # else another process won the rename
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst / MODEL_PATH


def load_model(settings: Settings, alias_or_version: str | int):
    """(model, tokenizer) of a registered version, downloaded through MLflow, adapter applied."""
    client = client_for(settings)
    version = resolve_version(client, settings.registered_model, alias_or_version)
    local = local_model_dir(settings, str(version.version))
    flavor = Model.load(str(local / "MLmodel")).flavors[FLAVOR]
    return load_causal_lm(
        flavor["base_model"], flavor.get("base_revision"), str(local / flavor["adapter"])
    )
