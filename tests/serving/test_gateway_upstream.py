"""The ``openai`` backend against a second ``modelyard serve`` exposing vLLM's runtime LoRA
endpoints: two real processes over HTTP. The front gateway logs to PostgreSQL."""

from __future__ import annotations

from collections import Counter

import httpx
import openai
import pytest
from harness import MODEL, GatewayProcess, chat, register, set_aliases

from modelyard.serving.logreader import RequestLogReader
from modelyard.serving.requestlog import log_url
from modelyard.settings import Settings

pytestmark = pytest.mark.postgres


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


def test_upstream_refuses_what_vllm_refuses(settings, tiny_model, weak_adapter, tmp_path):
    """The LoRA endpoints answer like vLLM's: duplicate and missing adapters, unknown names."""
    upstream = GatewayProcess(
        tmp_path / "home", tiny_model, {"MODELYARD_SERVING__RUNTIME_LORA_UPDATES": "true"}
    ).start()
    post = lambda path, body: httpx.post(f"{upstream.url}{path}", json=body, timeout=60)  # noqa: E731
    try:
        load = {"lora_name": "mine", "lora_path": str(weak_adapter)}
        ok = post("/v1/load_lora_adapter", load)
        assert (ok.status_code, ok.text) == (
            200,
            "Success: LoRA adapter 'mine' added successfully.",
        )
        again = post("/v1/load_lora_adapter", load)
        assert (
            again.status_code == 400 and "already been loaded" in again.json()["error"]["message"]
        )
        missing = post("/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(tmp_path)})
        assert missing.status_code == 404
        answer = post(
            "/v1/chat/completions",
            {"model": "mine", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
        assert answer.status_code == 200 and answer.json()["model"] == "mine"
        assert post("/v1/unload_lora_adapter", {"lora_name": "mine"}).status_code == 200
        assert post("/v1/unload_lora_adapter", {"lora_name": "mine"}).status_code == 404
        direct = 'modelyard_serving_requests_total{alias="",version=""} 1.0'
        assert direct in upstream.metrics()
    finally:
        upstream.stop()
