"""Pure gate logic: bars, directions, absolute vs relative changes, margins, empty config."""

from __future__ import annotations

import pytest

from modelyard.evaluation.contamination import manifest_leaks, overlap_leaks
from modelyard.evaluation.gate import decide, metric_checks, resolve_gate
from modelyard.settings import GateSettings, MetricThreshold


def _gate(**thresholds: MetricThreshold) -> GateSettings:
    return GateSettings(primary_metric="rouge_l", thresholds=thresholds)


def _by_name(decision: dict) -> dict[str, dict]:
    return {c["name"]: c for c in decision["checks"]}


def test_no_thresholds_approves_nothing() -> None:
    decision = decide(_gate(), {"rouge_l": 1.0}, {"rouge_l": 0.0}, 0, [])
    assert not decision["passed"]
    assert decision["failed"] == ["gate.configured"]


def test_primary_metric_without_change_bar_is_refused() -> None:
    decision = decide(
        _gate(rouge_l=MetricThreshold(threshold=0.1)), {"rouge_l": 0.9}, {"rouge_l": 0.1}, 0, []
    )
    assert decision["failed"] == ["gate.primary_change"]


def test_floor_margin_and_direction() -> None:
    up = metric_checks("rouge_l", MetricThreshold(threshold=0.5), {"rouge_l": 0.7}, {})
    assert up[0]["passed"] and up[0]["margin"] == pytest.approx(0.2)
    down = metric_checks(
        "eval_loss", MetricThreshold(threshold=2.0, greater_is_better=False), {"eval_loss": 2.5}, {}
    )
    assert not down[0]["passed"] and down[0]["margin"] == pytest.approx(-0.5)


def test_absolute_change_gain_and_tolerated_regression() -> None:
    gain = MetricThreshold(min_absolute_change=0.05)
    ok = metric_checks("rouge_l", gain, {"rouge_l": 0.60}, {"rouge_l": 0.50})[0]
    short = metric_checks("rouge_l", gain, {"rouge_l": 0.52}, {"rouge_l": 0.50})[0]
    assert ok["passed"] and ok["margin"] == pytest.approx(0.05)
    assert not short["passed"] and short["margin"] == pytest.approx(-0.03)
    guard = MetricThreshold(min_absolute_change=-0.05)
    assert metric_checks("em", guard, {"em": 0.46}, {"em": 0.50})[0]["passed"]
    assert not metric_checks("em", guard, {"em": 0.40}, {"em": 0.50})[0]["passed"]


def test_lower_is_better_change() -> None:
    bar = MetricThreshold(min_absolute_change=0.1, greater_is_better=False)
    better = metric_checks("eval_loss", bar, {"eval_loss": 1.0}, {"eval_loss": 1.5})[0]
    worse = metric_checks("eval_loss", bar, {"eval_loss": 1.6}, {"eval_loss": 1.5})[0]
    assert better["passed"] and better["value"] == pytest.approx(0.5)
    assert not worse["passed"] and worse["margin"] == pytest.approx(-0.2)


def test_relative_change() -> None:
    bar = MetricThreshold(min_relative_change=0.1)
    assert metric_checks("m", bar, {"m": 0.55}, {"m": 0.5})[0]["passed"]  # +10 %
    check = metric_checks("m", bar, {"m": 0.52}, {"m": 0.5})[0]  # +4 %
    assert not check["passed"] and check["value"] == pytest.approx(0.04)
    guard = MetricThreshold(min_relative_change=-0.1, greater_is_better=False)
    assert metric_checks("ppl", guard, {"ppl": 10.5}, {"ppl": 10.0})[0]["passed"]  # 5 % worse
    assert not metric_checks("ppl", guard, {"ppl": 12.0}, {"ppl": 10.0})[0]["passed"]


def test_missing_metric_fails_its_checks() -> None:
    checks = metric_checks(
        "bleu", MetricThreshold(threshold=0.1, min_absolute_change=0.0), {}, {"bleu": 0.2}
    )
    assert [c["passed"] for c in checks] == [False, False]
    assert "missing" in checks[0]["detail"]


def test_contamination_blocks_and_missing_manifest_count_blocks() -> None:
    gate = _gate(rouge_l=MetricThreshold(min_absolute_change=0.0))
    scores = ({"rouge_l": 0.5}, {"rouge_l": 0.4})
    assert decide(gate, *scores, 0, [])["passed"]
    assert decide(gate, *scores, 2, [])["failed"] == ["contamination.manifest"]
    assert decide(gate, *scores, None, [])["failed"] == ["contamination.manifest"]
    leak = decide(gate, *scores, 0, ["r1"])
    assert leak["failed"] == ["contamination.overlap"]
    assert "r1" in _by_name(leak)["contamination.overlap"]["detail"]


def test_every_failed_threshold_is_named() -> None:
    gate = _gate(
        rouge_l=MetricThreshold(threshold=0.3, min_absolute_change=0.0),
        exact_match=MetricThreshold(min_absolute_change=-0.05),
    )
    decision = decide(
        gate, {"rouge_l": 0.1, "exact_match": 0.1}, {"rouge_l": 0.2, "exact_match": 0.3}, 0, []
    )
    assert decision["failed"] == [
        "rouge_l.threshold",
        "rouge_l.min_absolute_change",
        "exact_match.min_absolute_change",
    ]


def test_registered_model_override_replaces_fields() -> None:
    gate = resolve_gate(
        GateSettings(),
        '{"thresholds": {"bleu": {"threshold": 0.9, '
        '"min_absolute_change": 0}}, "primary_metric": "bleu"}',
    )
    assert gate.primary_metric == "bleu" and list(gate.thresholds) == ["bleu"]
    assert resolve_gate(GateSettings(), None) == GateSettings()
    with pytest.raises(ValueError, match=r"modelyard\.gate"):
        resolve_gate(GateSettings(), "{not json")


def test_manifest_contamination_section_shapes() -> None:
    assert manifest_leaks({"contamination": {"leaked_to_train": 2, "rejected": 5}}) == 2
    assert manifest_leaks({"contamination": {"rejected": 5, "checked_train_records": 90}}) == 0
    assert manifest_leaks({"contamination": {}}) is None
    assert manifest_leaks({}) is None


def test_overlap_leaks_exact_and_by_ngram_coverage() -> None:
    def rec(rid: str, prompt: str, completion: str) -> dict:
        return {"id": rid, "prompt": prompt, "completion": completion}

    train = [
        rec("t1", "Extract: Alice is a baker who lives in Paris.", '{"name": "Alice"}'),
        rec("t2", "the quick brown fox jumps over the lazy dog again and again", "ok"),
    ]
    # s1 has the words of t1 (case and punctuation aside); s2 those of t2; s3 shares some 4-grams
    suite = [
        rec("s1", "extract alice is a BAKER who lives in paris", '{"name":"Alice"}'),
        rec("s2", "the quick brown fox jumps over the lazy dog again and again!", "ok."),
        rec("s3", "the quick brown fox jumps over a sleepy cat", "no"),
    ]
    assert overlap_leaks(train, suite, n=4, coverage=0.8) == ["s1", "s2"]
    assert overlap_leaks(train, suite, n=4, coverage=0.3) == ["s1", "s2", "s3"]


def test_overlap_leaks_sees_through_disguises_and_reads_what_the_trainer_trains_on() -> None:
    """Full-width letters are NFKC-folded; a suite record hidden in a system turn is still
    trained on, so it is still a leak."""
    prompt = "In Lyon, Priya Raman works as a nurse at the central hospital near the river bank."
    completion = '{"name": "Priya Raman", "city": "Lyon", "job": "nurse"}'
    suite = [{"id": "s1", "prompt": prompt, "completion": completion}]

    def chat(*turns: tuple[str, str]) -> dict:
        return {"id": "t", "messages": [{"role": r, "content": c} for r, c in turns]}

    wide = prompt.translate({c: c + 0xFEE0 for c in range(ord("A"), ord("z") + 1)})
    assert wide != prompt
    assert overlap_leaks([chat(("user", wide), ("assistant", completion))], suite, 8, 0.8)
    hidden = chat(("system", f"{prompt} {completion}"), ("user", "hi"), ("assistant", "hello"))
    assert overlap_leaks([hidden], suite, 8, 0.8) == ["s1"]
    unrelated = chat(("user", "In Lyon, Tom works as a baker."), ("assistant", '{"name": "Tom"}'))
    assert overlap_leaks([unrelated], suite, 8, 0.8) == []
