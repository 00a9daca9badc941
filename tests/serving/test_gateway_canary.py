"""One gateway with production and a canary: OpenAI clients, sticky canary share, what the
request log keeps (and does not), feedback, and /metrics agreeing with the log."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter, defaultdict

import httpx
import openai
import pytest
from harness import MODEL, GatewayProcess, chat, register, set_aliases

from modelyard.serving.formatcheck import format_check
from modelyard.serving.logreader import RequestLogReader
from modelyard.serving.routing import user_hash
from modelyard.settings import Settings

SHARE = 0.3


@pytest.fixture(scope="module")
def canary(tmp_path_factory, tiny_model, good_adapter, weak_adapter, new_mlflow_store):
    """(settings, gateway, production version, canary version) for the whole module."""
    settings = Settings(home=tmp_path_factory.mktemp("canary-home"), base_model=str(tiny_model))
    new_mlflow_store(settings)
    good, weak = register(settings, good_adapter, "good"), register(settings, weak_adapter, "weak")
    set_aliases(settings, production=good, canary=weak)
    gateway = GatewayProcess(
        settings.home, tiny_model, {"MODELYARD_SERVING__CANARY_SHARE": str(SHARE)}
    ).start()
    gateway.wait_routes(good, weak)
    yield settings, gateway, good, weak
    gateway.stop()


def _flushed(settings: Settings, ids: list[str], timeout: float = 10) -> RequestLogReader:
    """The log once every id in ``ids`` is committed (the writer flushes every 0.1 s here)."""
    reader = RequestLogReader.for_settings(settings)
    deadline = time.monotonic() + timeout
    while not set(ids) <= {r.id for r in reader.requests()}:
        assert time.monotonic() < deadline, "log rows missing"
        time.sleep(0.1)
    return reader


def test_openai_client_and_curl(canary) -> None:
    settings, gateway, good, weak = canary
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()][0] == MODEL
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Priya is a chemist from Lima."}],
        max_tokens=48,
        temperature=0,
        user="openai-client",
    )
    answer = raw.parse()
    version, alias = raw.headers["x-modelyard-version"], raw.headers["x-modelyard-alias"]
    assert answer.model == f"{MODEL}/{version}" and (alias, version) in {
        ("production", good),
        ("canary", weak),
    }
    assert answer.usage.prompt_tokens > 0 and answer.choices[0].message.role == "assistant"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="above this gateway's limit"):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=10**6
        )

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    out = subprocess.run(
        [curl, "-sS", "-i", f"{gateway.url}/v1/chat/completions"]
        + ["-H", "Content-Type: application/json", "-d", json.dumps(body)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    head, _, payload = out.partition("\n\n")  # text mode turned \r\n into \n
    assert head.startswith("HTTP/1.1 200") and "x-modelyard-version:" in head.lower()
    assert json.loads(payload)["object"] == "chat.completion"


def test_canary_share_is_sticky_per_user(canary) -> None:
    settings, gateway, good, weak = canary
    users = [f"share-user-{i}" for i in range(120)]
    seen: dict[str, set[str]] = defaultdict(set)
    with httpx.Client() as client:
        for user in users + users[:30] + users[:30]:
            resp = chat(client, gateway.url, user, max_tokens=1)
            assert resp.status_code == 200
            seen[user].add(resp.headers["x-modelyard-version"])
        # No ``user``: the client's address is the key, so this client sees one model.
        anonymous = {
            chat(client, gateway.url, None, max_tokens=1).headers["x-modelyard-version"]
            for _ in range(6)
        }
    assert all(len(versions) == 1 for versions in seen.values())  # one user, one model
    share = sum(weak in v for v in seen.values()) / len(users)
    assert abs(share - SHARE) < 4 * (SHARE * (1 - SHARE) / len(users)) ** 0.5  # 4 sigma
    assert len(anonymous) == 1


def test_log_scrubs_pii_and_keeps_no_text_when_store_is_false(canary) -> None:
    settings, gateway, good, weak = canary
    secret = "Tara (tara.k@example.org, +44 20 7946 0958) is a nurse from Porto."
    with httpx.Client() as client:
        kept = chat(client, gateway.url, "pii-user", content=secret, max_tokens=48).json()
        private = chat(client, gateway.url, "pii-user", content=secret, store=False).json()
    reader = _flushed(settings, [kept["id"], private["id"]])
    row = reader.response(kept["id"])
    assert row.stored and row.prompt == [
        {"role": "user", "content": "Tara (<EMAIL>, <PHONE>) is a nurse from Porto."}
    ]
    assert row.completion == kept["choices"][0]["message"]["content"]  # no PII in it to scrub
    assert row.completion_tokens == kept["usage"]["completion_tokens"]
    # The verdict is the eval suite's format check on the real output.
    assert row.format_valid is format_check(settings)([row.completion])[0]
    hidden = reader.response(private["id"])
    assert (hidden.stored, hidden.prompt, hidden.completion) == (False, None, None)
    assert hidden.format_valid is not None and hidden.user_hash == row.user_hash
    with reader.engine.connect() as conn:  # nowhere in the database, not only not returned
        dump = "\n".join(str(r) for r in conn.exec_driver_sql("SELECT * FROM serving_requests"))
    # The phone whole: a bare "7946" also turns up in timestamps and latencies.
    assert "tara.k@example.org" not in dump and "7946 0958" not in dump


def test_feedback_is_joined_to_its_request(canary) -> None:
    settings, gateway, good, weak = canary
    with httpx.Client() as client:
        up = chat(client, gateway.url, "rater-1").json()
        down = chat(client, gateway.url, "rater-2", store=False).json()
        post = lambda body: client.post(f"{gateway.url}/v1/feedback", json=body)  # noqa: E731
        assert post({"response_id": up["id"], "rating": -1}).status_code == 200
        assert post({"response_id": up["id"], "rating": 1, "correction": "mail x@y.io"}).json()[
            "recorded"
        ]
        assert post({"response_id": down["id"], "rating": -1, "correction": "secret"}).status_code
        bad = [
            post({"response_id": up["id"], "rating": 5}),
            post({"response_id": "chatcmpl-unknown", "rating": 1}),
            post({"rating": 1}),
        ]
    assert [r.status_code for r in bad] == [400, 404, 400]
    assert all(r.json()["error"]["message"].count("\n") == 0 for r in bad)
    reader = _flushed(settings, [up["id"], down["id"]])
    deadline = time.monotonic() + 10
    while len(reader.feedback(latest_only=False)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    events = {f.response_id: f for f in reader.feedback()}  # the latest per response
    assert (events[up["id"]].rating, events[up["id"]].correction) == (1, "mail <EMAIL>")
    assert events[up["id"]].version == up["model"].rsplit("/", 1)[1]
    assert (events[down["id"]].rating, events[down["id"]].correction) == (-1, None)


def _samples(metrics: str, name: str) -> Counter:
    pattern = rf'^{name}{{alias="(\w*)",version="(\w*)"}} (\S+)$'
    return Counter({(a, v): int(float(n)) for a, v, n in re.findall(pattern, metrics, flags=re.M)})


def test_metrics_match_the_log(canary) -> None:
    settings, gateway, good, weak = canary
    with httpx.Client() as client:
        ids = [chat(client, gateway.url, f"metrics-{i}").json()["id"] for i in range(10)]
    reader = _flushed(settings, ids)
    metrics = gateway.metrics()
    logged = Counter((r.alias or "", r.version or "") for r in reader.requests())
    errors = Counter((r.alias or "", r.version or "") for r in reader.requests() if r.error)
    assert _samples(metrics, "modelyard_serving_requests_total") == logged
    assert _samples(metrics, "modelyard_serving_errors_total") == errors
    hist = _samples(metrics, "modelyard_serving_request_latency_seconds_count")
    assert hist == logged and set(logged) == {("production", good), ("canary", weak)}
    assert "modelyard_serving_log_dropped_total 0.0" in metrics


def test_text_that_is_not_unicode_is_a_400_and_sinks_nothing(canary) -> None:
    """JSON may escape a lone surrogate: refused before the tokenizer (it was a 500) and
    before the request log (it dropped the whole batch, other users' rows with it); in the
    model name it broke the error response and reset the connection."""
    settings, gateway, good, weak = canary
    lone = "\ud83d"
    bodies = [  # json.dumps escapes the lone surrogate, as a client's JSON encoder would
        json.dumps({"model": MODEL, "messages": [{"role": "user", "content": lone}]}),
        json.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "text", "text": lone}]}],
            }
        ),
        json.dumps({"model": f"x{lone}", "messages": [{"role": "user", "content": "hi"}]}),
    ]
    headers = {"content-type": "application/json"}
    with httpx.Client() as client:
        innocent = chat(client, gateway.url, "bystander").json()["id"]
        for body in bodies:
            refused = client.post(
                f"{gateway.url}/v1/chat/completions", content=body, headers=headers
            )
            assert refused.status_code == 400, refused.text
            assert "lone surrogate" in refused.json()["error"]["message"]
        after = chat(client, gateway.url, "bystander")  # same connection, still served
    assert after.status_code == 200
    reader = _flushed(settings, [innocent, after.json()["id"]])
    # The log keys users by a hash salted with this deployment's own salt.
    salt = (settings.home / "serving" / "user_salt").read_text()
    assert reader.response(innocent).user_hash == user_hash("bystander", salt)


def test_a_prompt_past_the_context_window_is_a_400_not_a_stall(canary) -> None:
    """The one model thread serves every user: a prompt beyond the model's context (256
    tokens for the tiny model) used to be generated for anyway, a 10 MB one for minutes."""
    settings, gateway, good, weak = canary
    with httpx.Client() as client:
        for content, says in (
            ("word " * 300, "exceeds the model's context of 256"),
            ("word " * 2_000_000, "far beyond the model's context"),
        ):
            started = time.monotonic()
            refused = chat(client, gateway.url, "long", content=content)
            assert refused.status_code == 400 and says in refused.json()["error"]["message"]
            assert time.monotonic() - started < 30
        assert chat(client, gateway.url, "short").status_code == 200


def test_feedback_on_an_adapter_named_directly_is_refused(canary) -> None:
    """Only answers of the registered model are harvested: a rating of a response from an
    adapter named directly (as on vLLM) used to be "recorded" and then never harvested."""
    settings, gateway, good, weak = canary
    with httpx.Client() as client:
        names = [m["id"] for m in client.get(f"{gateway.url}/v1/models").json()["data"]]
        adapter = next(name for name in names if name != MODEL)
        direct = chat(client, gateway.url, "tester", model=adapter).json()
        refused = client.post(
            f"{gateway.url}/v1/feedback", json={"response_id": direct["id"], "rating": 1}
        )
    assert refused.status_code == 400
    assert "came from an adapter named directly" in refused.json()["error"]["message"]


def test_a_body_fastapi_cannot_parse_gets_openais_error_shape(canary) -> None:
    settings, gateway, good, weak = canary
    headers = {"content-type": "application/json"}
    with httpx.Client() as client:
        for body in (b'{"model": "\xff\xfe"}', b"[" * 100_000):
            refused = client.post(
                f"{gateway.url}/v1/chat/completions", content=body, headers=headers
            )
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["type"] == "invalid_request_error", refused.text
        missing = client.get(f"{gateway.url}/v1/nothing-here")
        assert missing.status_code == 404 and "error" in missing.json()
