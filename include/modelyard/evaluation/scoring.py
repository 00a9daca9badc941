"""Score one model on one suite: batched greedy generation, metric modules, completion-only loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import evaluate
import torch

from modelyard.evaluation.suite import Suite, metric_module_path


@dataclass
class SuiteScores:
    suite_version: str
    metrics: dict[str, float]
    predictions: list[dict]  # one {"id", "prediction", "reference"} per suite record


@lru_cache(maxsize=16)
def _metric(path: str) -> evaluate.EvaluationModule:
    return evaluate.load(path)


def _prompt(tokenizer, record: dict) -> str:
    return tokenizer.apply_chat_template(
        record["messages"][:-1], add_generation_prompt=True, tokenize=False
    )


@torch.inference_mode()
def generate(
    model, tokenizer, records: list[dict], max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy, left-padded batches, so every prompt ends where generation starts."""
    tokenizer.padding_side = "left"
    out = []
    for start in range(0, len(records), batch_size):
        prompts = [_prompt(tokenizer, r) for r in records[start : start + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        generated = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = generated[:, enc["input_ids"].shape[1] :]
        out += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return out


@torch.inference_mode()
def completion_loss(model, tokenizer, records: list[dict], batch_size: int) -> float:
    """Token-weighted mean NLL of the assistant turn given the prompt (prompt tokens masked).

    Prompt and completion are tokenized apart and concatenated, as TRL does for
    prompt-completion data, so the boundary never depends on how BPE merges across it.
    """
    total, count = 0.0, 0
    for start in range(0, len(records), batch_size):
        rows = []
        for r in records[start : start + batch_size]:
            prompt = _prompt(tokenizer, r)
            full = tokenizer.apply_chat_template(r["messages"], tokenize=False)
            p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            c_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
            rows.append((p_ids + c_ids, [-100] * len(p_ids) + c_ids))
        width = max(len(ids) for ids, _ in rows)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
        mask = torch.arange(width)[None, :] < torch.tensor([len(i) for i, _ in rows])[:, None]
        logits = model(input_ids=input_ids, attention_mask=mask.long()).logits[:, :-1]
        targets = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            targets.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        total += nll.item()
        count += int((targets != -100).sum())
    return total / max(count, 1)


def score(model, tokenizer, suite: Suite) -> SuiteScores:
    """Every metric of the suite's config, plus eval loss and perplexity when the config asks."""
    records = suite.records()
    gen = suite.config["generation"]
    predictions = generate(model, tokenizer, records, gen["max_new_tokens"], gen["batch_size"])
    references = [r["completion"] for r in records]
    metrics: dict[str, float] = {}
    for name in suite.config["metrics"]:
        args: dict[str, Any] = suite.config.get("metric_args", {}).get(name, {})
        result = _metric(metric_module_path(name)).compute(
            predictions=predictions, references=references, **args
        )
        metrics.update({k: float(v) for k, v in result.items() if isinstance(v, int | float)})
    if suite.config.get("loss", True):
        loss = completion_loss(model, tokenizer, records, gen["batch_size"])
        metrics.update(eval_loss=loss, perplexity=math.exp(min(loss, 50.0)))
    rows = [
        {"id": r["id"], "prediction": p, "reference": ref}
        for r, p, ref in zip(records, predictions, references, strict=True)
    ]
    return SuiteScores(suite_version=suite.version, metrics=metrics, predictions=rows)
