"""Every registered version loads the MLflow way: ``mlflow.pyfunc.load_model`` answers chat
messages and ``mlflow models serve`` serves it, from the adapter on the referenced base."""

from __future__ import annotations

import os

import httpx
import pytest
from harness import ServerProcess, register, set_aliases

from modelyard.airflow_env import VENV_BIN
from modelyard.registry.artifacts import load_causal_lm
from modelyard.serving.chat import complete

URI = "models:/modelyard-assistant@production"
ROWS = [
    {"messages": [{"role": "user", "content": "Wei is a dentist from Seoul."}], "max_tokens": 24},
    {"messages": [{"role": "user", "content": "Rosa is a judge from Riga."}], "max_tokens": 8},
]


@pytest.mark.usefixtures("mlflow_store")
def test_pyfunc_load_and_mlflow_models_serve(settings, tiny_model, good_adapter, monkeypatch):
    import mlflow

    set_aliases(settings, production=register(settings, good_adapter, "good"))
    # The server starts (tens of seconds) while this process computes what it must answer.
    server = ServerProcess(settings.home / "mlflow-serve.log")
    cmd = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", URI, "--env-manager", "local"]
    server.launch(
        [*cmd, "-h", "127.0.0.1", "-p", str(server.port)],
        # MLflow execs ``uvicorn`` by name: the venv is on PATH, as for anyone who activated it.
        {
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        },
    )
    try:
        model, tokenizer = load_causal_lm(str(tiny_model), None, str(good_adapter))
        expected = [
            complete(model, tokenizer, row["messages"], row["max_tokens"], 0.0).text for row in ROWS
        ]

        # The URIs through the environment, with no process-wide one in the way (the trainer,
        # run in-process for the adapters, sets one): monkeypatch undoes all three, where
        # mlflow.set_registry_uri would outlive this test and win over the URI that later
        # tests hand their MlflowClient.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", settings.tracking_uri)
        monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)
        loaded = mlflow.pyfunc.load_model(URI)
        assert loaded.predict(ROWS) == expected
        # A version is its adapter: the base model is referenced, not copied into the registry.
        stored = sum(
            f.stat().st_size for f in settings.home.joinpath("mlflow").rglob("*.safetensors")
        )
        base = sum(f.stat().st_size for f in tiny_model.rglob("*.safetensors"))
        assert stored < base

        server.wait_until(lambda: httpx.get(f"{server.url}/ping").status_code == 200, 180)
        resp = httpx.post(f"{server.url}/invocations", json={"inputs": ROWS}, timeout=120)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"predictions": expected}
    finally:
        server.stop()
