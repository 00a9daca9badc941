"""Test helpers shared by tests/evaluation and tests/registry.

Adapters are trained here with plain torch + PEFT (not the trainer package, which another
environment owns) so the gate sees real good and weak candidates; runs are real MLflow runs.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date
from pathlib import Path

import pytest
from modelyard.sampledata import write_partition


def curated(raw: dict, i: int, split: str) -> dict:
    """A raw sample record in the curated record shape (the curation stage's output)."""
    if "messages" in raw:
        messages = raw["messages"]
    elif "prompt" in raw:
        messages = [{"role": "user", "content": raw["prompt"]},
                    {"role": "assistant", "content": raw["completion"]}]
    else:
        messages = [{"role": "user", "content": f"{raw['instruction']}\n{raw['input']}"},
                    {"role": "assistant", "content": raw["output"]}]
    rid = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
    return {"id": rid, "messages": messages, "prompt": messages[0]["content"],
            "completion": messages[-1]["content"], "source": {"file": "part-0.jsonl", "line": i},
            "quality_score": None, "split": split}


def sample_records(tmp: Path, day: date, n: int) -> list[dict]:
    path = write_partition(tmp / "raw", day, n=n)
    seen, out = set(), []
    for i, line in enumerate(path.read_text().splitlines()):
        rec = curated(json.loads(line), i, "train")
        if rec["id"] not in seen:
            seen.add(rec["id"])
            out.append(rec)
    return out


def publish_dataset(storage: str, version: str, train: list[dict], evals: list[dict],
                    leaked_to_train: int = 0) -> dict:
    """Write a published dataset version the way curation lays it out; returns its manifest."""
    out = Path(storage) / "datasets" / version
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("eval", evals)):
        split = name
        (out / f"{name}.jsonl").write_text(
            "".join(json.dumps({**r, "split": split}) + "\n" for r in rows))
    manifest = {
        "version": version, "content_hash": hashlib.sha256(version.encode()).hexdigest(),
        "partition": "2026-01-01", "counts": {"train": len(train), "eval": len(evals)},
        "contamination": {"leaked_to_train": leaked_to_train},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def train_adapter(base_model: Path, records: list[dict], out_dir: Path, steps: int,
                  seed: int = 0, lr: float = 5e-3) -> Path:
    """A LoRA adapter trained on the completion tokens with plain torch; saved with tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base_model)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_model),
                           LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                      target_modules="all-linear", task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    rows = []
    for r in records:
        prompt = tok.apply_chat_template(r["messages"][:-1], add_generation_prompt=True,
                                         tokenize=False)
        full = tok.apply_chat_template(r["messages"], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
        rows.append((p_ids + c_ids, [-100] * len(p_ids) + c_ids))
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, min(16, len(rows)))
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def train_result(settings, adapter_dir: Path, base_model: Path, name: str) -> dict:
    """A real MLflow run standing for the trainer's run, and the result.json it would write."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    exp = client.get_experiment_by_name("modelyard-finetune")
    exp_id = exp.experiment_id if exp else client.create_experiment(
        "modelyard-finetune", artifact_location=settings.artifact_root)
    run = client.create_run(exp_id, run_name=name)
    client.set_terminated(run.info.run_id)
    return {"mlflow_run_id": run.info.run_id, "adapter_dir": str(adapter_dir),
            "best_checkpoint": str(adapter_dir), "global_step": 1, "metrics": {},
            "config_hash": hashlib.sha256(name.encode()).hexdigest()[:12],
            "base_model": str(base_model), "base_revision": "local", "backend": "hf"}




@pytest.fixture(scope="session")
def eval_sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Disjoint train and held-out records of the sample task (deduplicated by id)."""
    records = sample_records(tmp_path_factory.mktemp("sample"), date(2026, 1, 1), n=240)
    return {"train": records[:150], "eval": records[150:174], "later_eval": records[174:190]}


def _adapter(tmp_path_factory, tiny_model: Path, sample: dict, name: str, steps: int,
             seed: int = 0) -> Path:
    """Trained once per pytest session: the cache dir is shared by every conftest importing this."""
    out = tmp_path_factory.getbasetemp() / "adapters" / name
    if not (out / "adapter_model.safetensors").exists():
        train_adapter(tiny_model, sample["train"], out, steps=steps, seed=seed)
    return out


@pytest.fixture(scope="session")
def good_adapter(tmp_path_factory, tiny_model, eval_sample) -> Path:
    return _adapter(tmp_path_factory, tiny_model, eval_sample, "good", steps=50)


@pytest.fixture(scope="session")
def weak_adapter(tmp_path_factory, tiny_model, eval_sample) -> Path:
    return _adapter(tmp_path_factory, tiny_model, eval_sample, "weak", steps=1)


@pytest.fixture(scope="session")
def other_good_adapter(tmp_path_factory, tiny_model, eval_sample) -> Path:
    """A second good candidate with different weights (another seed)."""
    return _adapter(tmp_path_factory, tiny_model, eval_sample, "good-seed1", steps=50, seed=1)
