"""The hf backend really fine-tunes the tiny model on CPU and records everything in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from peft import PeftModel
from trainer_helpers import small_config, write_config
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.__main__ import main
from trainer.checkpoints import SEAL


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, curated):
    """One 100-step run (the DAG's default), exported merged and mirrored; shared by the asserts."""
    root = tmp_path_factory.mktemp("learn")
    cfg = small_config(
        tiny_model,
        curated,
        root,
        mirror_dir=str(root / "mirror"),
        data_version="ds-0123456789ab",
        max_steps=100,
        eval_steps=20,
        save_steps=20,
        logging_steps=10,
        early_stopping_patience=3,
        seed=3,
        export="merged",
    )
    assert main(["--config", str(write_config(cfg, root / "config.json"))]) == 0
    result = json.loads((root / "run" / "result.json").read_text())
    return cfg, result, root


def test_eval_loss_falls_substantially(trained):
    _, result, _ = trained
    metrics = result["metrics"]
    assert metrics["eval_loss"] < 0.3 * metrics["first_eval_loss"], metrics
    assert result["global_step"] == 100
    assert Path(result["best_checkpoint"]).name.startswith("checkpoint-")


def _greedy(model, tokenizer, messages) -> str:
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(
        **inputs, max_new_tokens=32, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_generation_follows_the_json_template(trained, tiny_model, curated):
    _, result, _ = trained
    tokenizer = AutoTokenizer.from_pretrained(result["adapter_dir"])
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    tuned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), result["adapter_dir"]
    )
    merged = AutoModelForCausalLM.from_pretrained(result["export_dir"])
    rows = [json.loads(line) for line in (curated / "eval.jsonl").read_text().splitlines()[:6]]
    tuned_out = [_greedy(tuned, tokenizer, r["messages"][:-1]) for r in rows]
    assert all(
        o.startswith('{"name": "') and '"job": "' in o and '"city": "' in o for o in tuned_out
    ), tuned_out
    assert not any(_greedy(base, tokenizer, r["messages"][:-1]).startswith('{"name"') for r in rows)
    # The merged export is the same model as base + adapter.
    assert [_greedy(merged, tokenizer, r["messages"][:-1]) for r in rows] == tuned_out


def test_mlflow_has_params_metrics_and_artifacts(trained):
    cfg, result, root = trained
    client = MlflowClient(cfg["mlflow"]["tracking_uri"])
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["lora.r"] == "16"
    assert run.data.params["learning_rate"] == "0.005"
    assert run.data.tags["data_version"] == "ds-0123456789ab"
    for name in (
        "train_loss",
        "eval_loss",
        "grad_norm",
        "learning_rate",
        "tokens_per_second",
        "peak_memory_mb",
    ):
        assert len(client.get_metric_history(run.info.run_id, name)) >= 2, name
    evals = [
        m.value
        for m in sorted(
            client.get_metric_history(run.info.run_id, "eval_loss"), key=lambda m: m.step
        )
    ]
    assert evals[-1] < evals[0]

    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(root / "download")))
    assert (artifacts / "adapter" / "adapter_model.safetensors").is_file()
    assert (artifacts / "adapter" / "tokenizer.json").is_file()
    assert (artifacts / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    card = (artifacts / "model_card.md").read_text()
    assert "ds-0123456789ab" in card and "Intended use" in card and "eval_loss" in card
    resolved = json.loads((artifacts / "config" / "trainer_config.json").read_text())
    assert resolved["max_steps"] == 100 and resolved["lora"]["target_modules"]


def test_checkpoints_and_results_are_mirrored(trained):
    cfg, result, _ = trained
    mirror = Path(cfg["mirror_dir"])
    assert json.loads((mirror / "result.json").read_text()) == result
    assert (mirror / "adapter" / "adapter_model.safetensors").is_file()
    mirrored = sorted((mirror / "checkpoints").iterdir())
    assert mirrored and all((c / SEAL).is_file() for c in mirrored)
