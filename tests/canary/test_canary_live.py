"""Done-when, with real processes on loopback: a canary that passed the offline gate only
because a per-model override let it through answers worse live, ``canary_analysis`` (run by
``airflow dags test``) rolls it back and the gateway stops routing to it within one poll; a
good canary is promoted and takes production traffic."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from evaluation.helpers import publish_dataset, train_result
from mlflow import MlflowClient
from serving.harness import GatewayProcess, chat, register

from modelyard.airflow_env import airflow, init_airflow
from modelyard.canary.auto import auto_canary
from modelyard.canary.decision import run_canary_analysis
from modelyard.canary.loadgen import simulate_users
from modelyard.evaluation import evaluate_candidate
from modelyard.registry import promote, register_candidate, status
from modelyard.registry.tags import CANARY_ANALYSIS, CANARY_VERDICT, GATE
from modelyard.serving.logreader import RequestLogReader
from modelyard.settings import CanarySettings, Settings

POLL = 0.5
#: Lenient enough for a one-step adapter: the offline gate admits what live users will reject.
OVERRIDE = {
    "thresholds": {
        "rouge_l": {"threshold": 0.0, "min_absolute_change": -1.0},
        "format_validity": {"threshold": 0.0},
        "exact_match": {"min_absolute_change": -1.0},
    }
}


def _logged(settings: Settings, requests: int, ratings: int, timeout: float = 30) -> None:
    """Wait until the gateway's log writer has committed this many requests and ratings."""
    reader = RequestLogReader.for_settings(settings)
    deadline = time.monotonic() + timeout
    try:
        while (
            len(reader.requests()) < requests or len(reader.feedback(latest_only=False)) < ratings
        ):
            assert time.monotonic() < deadline, "request log rows missing"
            time.sleep(0.1)
    finally:
        reader.close()


@pytest.mark.usefixtures("mlflow_store")
def test_bad_canary_rolled_back_live_good_canary_promoted(
    settings, tiny_model, good_adapter, weak_adapter, eval_sample, monkeypatch
) -> None:
    # 20 samples per arm (the defaults want 30) keep the traffic, and the test, short; the
    # environment reaches the `airflow dags test` process too.
    for metric in ("ERROR_RATE", "FORMAT_VALIDITY", "LATENCY", "THUMBS_UP"):
        monkeypatch.setenv(f"MODELYARD_CANARY__METRICS__{metric}__MIN_SAMPLES", "20")
    name = settings.registered_model
    good = register(settings, good_adapter, "good")
    promote(settings, to="canary", actor="tests", reason="setup")
    promote(settings, to="production", actor="tests", reason="setup")

    # The weak candidate goes through the real gate, admitted by the model's override tag.
    client = MlflowClient(settings.tracking_uri)
    client.set_registered_model_tag(name, GATE, json.dumps(OVERRIDE))
    sample = eval_sample
    manifest = publish_dataset(settings.storage, "ds-live", sample["train"], sample["eval"])
    trained = train_result(settings, weak_adapter, tiny_model, "weak")
    report = evaluate_candidate(trained, settings, manifest)
    assert report["passed"], report["gate"]["failed"]
    ctx = {"dag_id": "finetune_model", "run_id": "weak"}
    weak = register_candidate(trained, report, manifest, ctx, settings)["version"]
    assert auto_canary(settings, [{"version": weak, "staging": True}])[0]["stage"] == "canary"

    gateway = GatewayProcess(
        settings.home,
        tiny_model,
        {"MODELYARD_SERVING__CANARY_SHARE": "0.5", "MODELYARD_SERVING__POLL_SECONDS": str(POLL)},
    ).start()
    try:
        gateway.wait_routes(good, weak)
        load = simulate_users(gateway.url, name, requests=80, users=40, concurrency=3)
        assert load.failed == 0 and load.by_alias["canary"] >= 20, load.lines()
        assert load.thumbs[("production", 1)] > load.thumbs[("canary", 1)], load.lines()
        sent, rated = load.requests, sum(load.thumbs.values())
        _logged(settings, sent, rated)

        init_airflow(settings)
        run = airflow(["dags", "test", "canary_analysis"], settings, check=False, capture=True)
        decided = time.monotonic()
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        state = status(settings)
        assert state["aliases"] == {"production": good}, run.stdout[-3000:]
        assert state["ledger"][-1]["dag_id"] == "canary_analysis"
        tags = client.get_model_version(name, weak).tags
        assert tags[CANARY_VERDICT] == "failed"
        summary = json.loads(tags[CANARY_ANALYSIS])
        verdicts = {m["name"]: m["verdict"] for m in summary["metrics"]}
        assert summary["outcome"] == "rolled_back" and verdicts["format_validity"] == "fail"

        # The gateway follows within one poll interval (plus the request that observes it).
        gateway.wait_routes(good, None, timeout=POLL + 2.0)
        assert time.monotonic() - decided < POLL + 2.0
        with httpx.Client() as http:
            after = {
                chat(http, gateway.url, f"sim-user-{i}").headers["x-modelyard-alias"]
                for i in range(40)
            }
        assert after == {"production"}
        sent += 40

        # A good canary: same figures as production, promoted once its bake time is over.
        better = register(settings, good_adapter, "good-again")
        promote(settings, to="canary", actor="tests", reason="a good candidate")
        gateway.wait_routes(good, better)
        load = simulate_users(gateway.url, name, requests=80, users=40, concurrency=3, seed=1)
        assert load.failed == 0 and load.by_alias["canary"] >= 20, load.lines()
        _logged(settings, sent + load.requests, rated + sum(load.thumbs.values()))
        short = {m: {"min_samples": 20} for m in ("error_rate", "format_validity", "latency")}
        canary_cfg = CanarySettings(
            bake_minutes=0, metrics=short | {"thumbs_up": {"min_samples": 20}}
        )
        baked = settings.model_copy(update={"canary": canary_cfg})
        verdict = run_canary_analysis(baked, dag_id="canary_analysis", dag_run_id="manual")
        assert verdict["outcome"] == "promoted", verdict["reason"]
        gateway.wait_routes(better, None, timeout=POLL + 5.0)
    finally:
        gateway.stop()
