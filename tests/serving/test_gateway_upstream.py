"""The ``openai`` backend against a second ``modelyard serve`` exposing vLLM's runtime LoRA
endpoints: two real processes over HTTP. The front gateway logs to PostgreSQL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest
from harness import MODEL, GatewayProcess, chat, register, set_aliases

from modelyard.serving.logreader import RequestLogReader
from modelyard.serving.requestlog import log_url
from modelyard.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("mlflow_store")]


def _adapters(upstream: GatewayProcess) -> set[str]:
    return {m["id"] for m in httpx.get(f"{upstream.url}/v1/models").json()["data"][1:]}


def test_openai_backend_through_a_second_gateway(
    settings, tiny_model, good_adapter, weak_adapter, postgres_url, tmp_path
) -> None:
    good, weak = register(settings, good_adapter, "good"), register(settings, weak_adapter, "weak")
    set_aliases(settings, production=good, canary=weak)
    # The upstream knows no registry (its own empty home), like a vLLM server: it only serves
    # what it is told to load.
    upstream = GatewayProcess(
        tmp_path / "upstream-home", tiny_model, {"MODELYARD_SERVING__RUNTIME_LORA_UPDATES": "true"}
    ).start()
    front_env = {
        "MODELYARD_SERVING__BACKEND": "openai",
        "MODELYARD_SERVING__UPSTREAM_URL": upstream.url,
        "MODELYARD_SERVING__LOG_URL": postgres_url,
        "MODELYARD_SERVING__CANARY_SHARE": "0.5",
    }
    front = GatewayProcess(settings.home, tiny_model, front_env)
    try:
        front.start().wait_routes(good, weak)
        assert upstream.health()["status"] == "loading"  # it has no production of its own
        assert _adapters(upstream) == {f"{MODEL}-v{good}", f"{MODEL}-v{weak}"}

        client = openai.OpenAI(base_url=f"{front.url}/v1", api_key="unused", max_retries=0)
        seen = Counter()
        for i in range(16):
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Hugo is a cook."}],
                max_tokens=4,
                user=f"u{i}",
            )
            version = raw.headers["x-modelyard-version"]
            assert raw.parse().model == f"{MODEL}/{version}"
            seen[raw.headers["x-modelyard-alias"], version] += 1
        assert set(seen) == {("production", good), ("canary", weak)}

        # The canary alias goes: the front stops routing to it and unloads it upstream.
        set_aliases(settings, canary=None)
        front.wait_routes(good, None)
        front.wait_until(lambda: _adapters(upstream) == {f"{MODEL}-v{good}"}, 30)
        # An upstream that loses its adapters (a restart) gets them back at the next poll.
        upstream.stop()
        with pytest.raises(openai.APIStatusError) as down:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=4
            )
        assert down.value.status_code == 502 and "unreachable" in down.value.message
        upstream.start()
        front.wait_until(lambda: _adapters(upstream) == {f"{MODEL}-v{good}"}, 30)
        with httpx.Client() as http:
            assert chat(http, front.url, "back").status_code == 200
        _answers_like_vllm(upstream, weak_adapter, tmp_path)
    finally:
        front.stop()
        upstream.stop()

    # The upstream answered by adapter name and logged each request under that name.
    upstream_log = log_url(Settings(home=tmp_path / "upstream-home"))
    direct = RequestLogReader(upstream_log, f"{MODEL}-v{good}").requests()
    assert direct and {(r.alias, r.version) for r in direct} == {(None, None)}

    # The front's log is in PostgreSQL, and its /metrics counted what it logged.
    reader = RequestLogReader(postgres_url, MODEL)
    rows = reader.requests()
    errors = [r for r in rows if r.error]
    assert len(rows) == 18 and [(r.status, r.version) for r in errors] == [(502, good)]
    assert Counter((r.alias, r.version) for r in rows if not r.error) == seen + Counter(
        {("production", good): 1}
    )
    reader.close()


def _answers_like_vllm(upstream: GatewayProcess, adapter: Path, tmp_path: Path) -> None:
    """The LoRA endpoints answer as vLLM's do: duplicate and missing adapters, unknown names."""
    with httpx.Client(base_url=upstream.url, timeout=60) as http:
        load = {"lora_name": "mine", "lora_path": str(adapter)}
        ok = http.post("/v1/load_lora_adapter", json=load)
        assert (ok.status_code, ok.text) == (
            200,
            "Success: LoRA adapter 'mine' added successfully.",
        )
        again = http.post("/v1/load_lora_adapter", json=load)
        assert (
            again.status_code == 400 and "already been loaded" in again.json()["error"]["message"]
        )
        missing = {"lora_name": "x", "lora_path": str(tmp_path)}
        assert http.post("/v1/load_lora_adapter", json=missing).status_code == 404
        body = {"model": "mine", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        answer = http.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200 and answer.json()["model"] == "mine"
        assert http.post("/v1/unload_lora_adapter", json={"lora_name": "mine"}).status_code == 200
        gone = http.post("/v1/unload_lora_adapter", json={"lora_name": "mine"})
        assert gone.status_code == 404 and "cannot be found" in gone.json()["error"]["message"]
