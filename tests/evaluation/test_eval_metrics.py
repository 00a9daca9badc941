"""Shipped metric modules load offline by path; scoring computes completion-only loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from modelyard.evaluation.scoring import completion_loss, score
from modelyard.evaluation.suite import METRICS_DIR, Suite, suite_config
from modelyard.registry.artifacts import load_causal_lm

TASK_METRIC = """
import datasets
import evaluate

class FirstChar(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="", citation="", features=datasets.Features(
            {"predictions": datasets.Value("string"), "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        return {"first_char": sum(p[:1] == r[:1] for p, r in zip(predictions, references))
                / len(predictions)}
"""


def test_shipped_metrics_load_offline() -> None:
    code = textwrap.dedent(f"""
        import json, evaluate
        out = {{}}
        for name in ["exact_match", "rouge_l", "bleu", "format_validity"]:
            m = evaluate.load("{METRICS_DIR}/" + name)
            out.update(m.compute(predictions=['{{"name": "A"}}', "a b c"],
                                 references=['{{"name": "A"}}', "a b d"],
                                 **({{"schema": {{"required": ["name"]}}}}
                                    if name == "format_validity" else {{}})))
        print(json.dumps(out))
    """)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["exact_match"] == 0.5
    assert scores["format_validity"] == 0.5
    assert scores["rouge_l"] == pytest.approx((1 + 2 / 3) / 2)
    assert 0 < scores["bleu"] < 1


def test_completion_loss_matches_model_loss_on_completion_tokens(tiny_model, eval_sample) -> None:
    model, tok = load_causal_lm(str(tiny_model))
    record = eval_sample["eval"][0]
    prompt = tok.apply_chat_template(
        record["messages"][:-1], add_generation_prompt=True, tokenize=False
    )
    full = tok.apply_chat_template(record["messages"], tokenize=False)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tok(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = model(
            input_ids=torch.tensor([p_ids + c_ids]),
            labels=torch.tensor([[-100] * len(p_ids) + c_ids]),
        ).loss.item()
    assert completion_loss(model, tok, [record], batch_size=4) == pytest.approx(expected, rel=1e-4)
    # batching with padding must not change the per-token mean
    pair = eval_sample["eval"][:3]
    one_by_one = completion_loss(model, tok, pair, 1)
    assert one_by_one == pytest.approx(completion_loss(model, tok, pair, 3), rel=1e-4)


def test_score_with_a_task_metric_module(
    settings, tiny_model, good_adapter, eval_sample, tmp_path
) -> None:
    (tmp_path / "first_char").mkdir()
    (tmp_path / "first_char" / "first_char.py").write_text(TASK_METRIC)
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in eval_sample["eval"]))
    config = suite_config(settings)
    config["metrics"].append(str(tmp_path / "first_char"))
    suite = Suite("suite-test", str(records), config)
    result = score(*load_causal_lm(str(tiny_model), None, str(good_adapter)), suite)
    assert set(result.metrics) >= {
        "exact_match",
        "rouge_l",
        "bleu",
        "format_validity",
        "first_char",
        "eval_loss",
        "perplexity",
    }
    assert result.metrics["first_char"] == 1.0  # every completion is a JSON object: "{"
    assert result.metrics["format_validity"] > 0.5
    assert [p["id"] for p in result.predictions] == [r["id"] for r in eval_sample["eval"]]
    base = score(*load_causal_lm(str(tiny_model)), suite)
    assert result.metrics["eval_loss"] < base.metrics["eval_loss"]
    assert result.metrics["rouge_l"] > base.metrics["rouge_l"]
