"""Early stopping on eval loss; the best checkpoint, not the last step, is what gets exported."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from trainer_helpers import write_config

from trainer.__main__ import main


def test_diverging_run_stops_early_and_exports_the_best(make_config, tmp_path):
    # A learning rate this high improves eval loss for a few steps, then makes it worse (0.2,
    # the value first used here, keeps improving slowly on today's stack: measured to step 80).
    cfg = make_config(
        learning_rate=0.6,
        max_steps=80,
        eval_steps=5,
        save_steps=5,
        early_stopping_patience=2,
        save_total_limit=2,
    )
    assert main(["--config", str(write_config(cfg, tmp_path / "config.json"))]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    best = Path(result["best_checkpoint"])
    history = json.loads((best / "trainer_state.json").read_text())["log_history"]
    evals = {row["step"]: row["eval_loss"] for row in history if "eval_loss" in row}

    assert result["global_step"] < 80  # stopped by patience, not by max_steps
    assert best.name == f"checkpoint-{min(evals, key=evals.get)}"
    assert result["global_step"] > int(best.name.split("-")[1])
    assert abs(result["metrics"]["eval_loss"] - min(evals.values())) < 1e-4
    exported = load_file(Path(result["adapter_dir"]) / "adapter_model.safetensors")
    kept = load_file(best / "adapter_model.safetensors")
    assert exported.keys() == kept.keys()
    assert all(torch.equal(exported[k], kept[k]) for k in kept)
