"""The gateway follows the registry under live traffic: no request fails while aliases move, a
version that cannot load never answers, a removed canary stops answering within a poll."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from harness import MODEL, GatewayProcess, Traffic, broken_adapter, chat, register

from modelyard.registry import promote, rollback
from modelyard.serving.logreader import RequestLogReader

POLL = 0.5


def _load_failures(metrics: str, version: str) -> float:
    pattern = rf'modelyard_serving_load_failures_total{{alias="(\w+)",version="{version}"}} (\S+)'
    return sum(float(m.group(2)) for m in re.finditer(pattern, metrics))


@pytest.mark.usefixtures("mlflow_store")
def test_traffic_survives_alias_moves(settings, tiny_model, good_adapter, weak_adapter, tmp_path):
    v1 = register(settings, good_adapter, "good")
    env = {"MODELYARD_SERVING__CANARY_SHARE": "0.5", "MODELYARD_SERVING__LOAD_RETRY_SECONDS": "1"}
    gateway = GatewayProcess(settings.home, tiny_model, env).start()
    try:
        # Up, but nothing in production yet: not ready, and a request is refused with 503.
        assert httpx.get(f"{gateway.url}/healthz").status_code == 503
        with httpx.Client() as client:
            early = chat(client, gateway.url, "early-bird")
        assert early.status_code == 503
        assert "no production version" in early.json()["error"]["message"]

        promote(settings, "canary", actor="tests", reason="smoke")
        promote(settings, "production", actor="tests", reason="first")
        gateway.wait_routes(v1, None)
        assert httpx.get(f"{gateway.url}/healthz").status_code == 200

        with Traffic(gateway.url) as traffic:
            traffic.wait_for(8)
            # A canary takes its share of users.
            v2 = register(settings, weak_adapter, "weak")
            promote(settings, "canary", actor="tests", reason="try v2")
            gateway.wait_routes(v1, v2)
            traffic.wait_for(12)

            # Promotion moves production to v2 and removes the canary alias in one step.
            promote(settings, "production", actor="tests", reason="v2 is fine")
            removed_at = time.time()
            gateway.wait_routes(v2, None)
            closed_at = time.time()
            traffic.wait_for(8)

            rollback(settings, actor="tests", reason="v2 answers worse")
            gateway.wait_routes(v1, None)
            traffic.wait_for(8)

            # A version that cannot load: as canary, and even as production.
            v3 = register(settings, broken_adapter(good_adapter, tmp_path / "broken"), "broken")
            promote(settings, "canary", actor="tests", reason="try v3")
            gateway.wait_until(lambda: _load_failures(gateway.metrics(), v3) >= 1, 30)
            traffic.wait_for(8)
            promote(settings, "production", actor="tests", reason="push v3")
            gateway.wait_until(lambda: f"version {v3} (production) failed" in gateway.output(), 30)
            traffic.wait_for(8)
            assert gateway.health() == {"status": "ready", "production": v1, "canary": None}
        gateway.stop()  # SIGTERM: the log writer flushes what it holds

        results = traffic.snapshot()
        assert [r for r in results if r.status != 200] == []  # zero failed requests
        served = {(r.alias, r.version) for r in results}
        assert ("canary", v2) in served and ("production", v2) in served
        assert all(r.version != v3 for r in results)
        # The removed canary closed within a poll (plus one registry read), and no request
        # sent after that reached it.
        assert closed_at - removed_at < POLL + 2.0
        assert not [r for r in results if r.alias == "canary" and r.sent > closed_at]
        assert f"version {v3} (canary) failed to load" in gateway.output()

        # The log agrees: every answered request is there with who answered it; v3 never is.
        reader = RequestLogReader.for_settings(settings)
        logged = {r.id: r for r in reader.requests()}
        for r in results:
            row = logged[r.response_id]
            assert (row.alias, row.version, row.status) == (r.alias, r.version, 200)
        assert not reader.requests(version=v3)
        refused = [row for row in logged.values() if row.status == 503]
        assert [(row.alias, row.version) for row in refused] == [("production", None)]
        assert all(row.model == MODEL for row in logged.values())
    finally:
        gateway.stop()
