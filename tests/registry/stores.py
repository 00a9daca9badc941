"""Stores and registered versions for tests of stages, locks and the ledger.

Promotion reads only a version's gate tags and aliases, so these tests need no trained adapter:
each version is a real MLflow model version (with a run and a logged file) on the real store.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from mlflow import MlflowClient

from modelyard.registry import tags
from modelyard.registry.artifacts import client_for
from modelyard.registry.stages import ensure_registered_model
from modelyard.settings import Settings


def gated_version(settings: Settings, passed: bool = True) -> str:
    """A new version of ``settings.registered_model`` with a gate decision and no alias."""
    client: MlflowClient = client_for(settings)
    name = settings.registered_model
    ensure_registered_model(client, name)
    experiment = client.get_experiment_by_name("registry-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("registry-tests")
    )
    run = client.create_run(experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "MLmodel").write_text("flavors: {}\n")
        client.log_artifacts(run.info.run_id, tmp, "model")
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(
        name,
        f"{run.info.artifact_uri}/model",
        run_id=run.info.run_id,
        tags={
            tags.GATE_DECISION: "passed" if passed else "failed",
            tags.GATE_FAILED: "" if passed else "rouge_l.threshold",
        },
    )
    return str(mv.version)


def staged_version(settings: Settings) -> str:
    """A version that passed the gate, holding ``staging`` as ``register_candidate`` leaves it."""
    version = gated_version(settings)
    client_for(settings).set_registered_model_alias(settings.registered_model, "staging", version)
    return version


def with_store(settings: Settings, tracking_uri: str, **registry: object) -> Settings:
    """``settings`` on another tracking store, under a registered model of this test alone
    (stores and lock backends are shared by tests; lock keys are per model name)."""
    return settings.model_copy(
        update={
            "mlflow_tracking_uri": tracking_uri,
            "registered_model": f"model-{uuid.uuid4().hex[:10]}",
            "registry": settings.registry.model_copy(update=registry),
        }
    )
