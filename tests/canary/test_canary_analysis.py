"""The statistics of canary analysis on request logs written by the real writer (SQLite)."""

from __future__ import annotations

import pytest
from logs import sqlite_url, write_arm, writer

from modelyard.canary.analysis import compare
from modelyard.canary.decision import decide
from modelyard.serving.logreader import RequestLogReader
from modelyard.settings import CanarySettings, Settings


def _arms(tmp_path, canary: dict, production: dict):
    url = sqlite_url(tmp_path / "requests.db")
    log = writer(url)
    write_arm(log, alias="canary", version="2", **canary)
    write_arm(log, alias="production", version="1", **production)
    write_arm(log, alias=None, version="2", n=50, error_rate=1.0)  # named adapter: not an arm
    log.close()
    assert log.written > 0 and log.dropped == 0
    reader = RequestLogReader(url, "modelyard-assistant")
    try:
        return (
            reader.arm(alias="canary", version="2"),
            reader.arm(alias="production", version="1"),
        )
    finally:
        reader.close()


def _by_name(results):
    return {m.name: m for m in results}


def test_a_worse_canary_fails_what_it_is_worse_at(tmp_path) -> None:
    canary, prod = _arms(
        tmp_path,
        dict(n=200, error_rate=0.10, valid_rate=0.55, thumbs_up_rate=0.4, latency_ms=120),
        dict(n=400, error_rate=0.01, valid_rate=0.95, thumbs_up_rate=0.9, latency_ms=50),
    )
    assert (canary.requests, prod.requests) == (200, 400)
    results = _by_name(compare(canary, prod, CanarySettings()))
    assert {m.verdict for m in results.values()} == {"fail"}
    err = results["error_rate"]
    assert err.canary == pytest.approx(0.10) and err.production == pytest.approx(0.01)
    assert err.effect == pytest.approx(0.09) and err.p_value < 1e-4
    fmt = results["format_validity"]
    assert fmt.effect == pytest.approx(0.55 - 0.95, abs=0.01) and fmt.worse == "lower"
    assert results["latency"].effect > 1.0 and results["latency"].p_value < 1e-10
    assert results["thumbs_up"].samples == (180, 396)  # rated answers, errors have none
    decision, why = decide(list(results.values()), 1.0, CanarySettings())
    assert decision == "rollback" and "error_rate failed" in why and "format_validity" in why
    assert "latency" not in why  # not critical by default: reported, never decisive


def test_an_equal_canary_passes_and_is_promoted_after_the_bake_time(tmp_path) -> None:
    same = dict(n=300, error_rate=0.02, valid_rate=0.9, thumbs_up_rate=0.8, latency_ms=50)
    canary, prod = _arms(tmp_path, same, {**same, "seed": 1})
    results = compare(canary, prod, CanarySettings())
    assert {m.verdict for m in results} == {"pass"}
    assert all(m.p_value is not None and m.p_value > 0.05 for m in results)
    cfg = CanarySettings(bake_minutes=30)
    assert decide(results, 10.0, cfg)[0] == "wait"
    assert decide(results, 31.0, cfg)[0] == "promote"


def test_tolerance_separates_significant_from_relevant(tmp_path) -> None:
    # 12 % slower with thousands of samples: significant, yet inside a 20 % allowance.
    canary, prod = _arms(
        tmp_path, dict(n=2000, latency_ms=56.0, valid_rate=0.97), dict(n=2000, latency_ms=50.0)
    )
    lenient = _by_name(compare(canary, prod, CanarySettings()))
    assert lenient["latency"].verdict == "pass" and lenient["latency"].effect > 0.1
    # A 3-point drop in validity is significant at n=2000 but inside a 5-point tolerance...
    strict = CanarySettings(metrics={"latency": {"tolerance": 0.0}})
    strict_results = _by_name(compare(canary, prod, strict))
    assert strict_results["latency"].verdict == "fail"
    assert strict.metrics["error_rate"].tolerance == 0.01  # one knob kept the other metrics
    tolerant = CanarySettings(metrics={"format_validity": {"tolerance": 0.05}})
    assert _by_name(compare(canary, prod, tolerant))["format_validity"].verdict == "pass"
    exact = CanarySettings(metrics={"format_validity": {"tolerance": 0.0}})
    assert _by_name(compare(canary, prod, exact))["format_validity"].verdict == "fail"


def test_too_few_requests_is_not_enough_data_and_waits_then_times_out(tmp_path) -> None:
    canary, prod = _arms(
        tmp_path,
        dict(n=12, error_rate=0.5, valid_rate=0.0, thumbs_up_rate=0.0),
        dict(n=500, thumbs_up_rate=0.9),
    )
    results = _by_name(compare(canary, prod, CanarySettings()))
    assert {m.verdict for m in results.values()} == {"not_enough_data"}
    assert results["error_rate"].samples == (12, 500) and results["error_rate"].p_value is None
    cfg = CanarySettings(bake_minutes=5, max_bake_minutes=60)
    decision, why = decide(list(results.values()), 30.0, cfg)
    assert decision == "wait" and "error_rate" in why
    assert decide(list(results.values()), 61.0, cfg)[0] == "rollback"  # on_timeout default
    promote_late = CanarySettings(bake_minutes=5, max_bake_minutes=60, on_timeout="promote")
    assert decide(list(results.values()), 61.0, promote_late)[0] == "promote"


def test_settings_refuse_nonsense_in_one_line() -> None:
    with pytest.raises(ValueError, match="bake_minutes"):
        CanarySettings(bake_minutes=120, max_bake_minutes=60)
    with pytest.raises(ValueError, match="extra"):
        CanarySettings(metrics={"latency": {"tolerence": 0.1}})
    with pytest.raises(ValueError):
        CanarySettings(metrics={"p99": {}})
    assert Settings(home="/tmp/x").canary.schedule == "*/15 * * * *"
