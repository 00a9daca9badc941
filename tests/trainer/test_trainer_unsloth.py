"""The Unsloth backend's seam: what it asks FastLanguageModel and SFTTrainer for.

Unsloth cannot run here (it needs an NVIDIA GPU; importing it raises without one), so a fake
``unsloth`` module stands in for it and hands back the real tiny model; everything after
loading (SFTTrainer, checkpoints, MLflow, export dispatch) runs for real on CPU.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer import backends, train
from trainer.config import parse_config


class FakeFastLanguageModel:
    calls: ClassVar[list[tuple[str, dict]]] = []

    @staticmethod
    def from_pretrained(**kwargs):
        FakeFastLanguageModel.calls.append(("from_pretrained", kwargs))
        name = kwargs["model_name"]
        return AutoModelForCausalLM.from_pretrained(name), AutoTokenizer.from_pretrained(name)

    @staticmethod
    def get_peft_model(model, **kwargs):
        FakeFastLanguageModel.calls.append(("get_peft_model", kwargs))
        peft_model = get_peft_model(
            model,
            LoraConfig(
                r=kwargs["r"],
                lora_alpha=kwargs["lora_alpha"],
                lora_dropout=kwargs["lora_dropout"],
                target_modules=kwargs["target_modules"],
                task_type="CAUSAL_LM",
            ),
        )

        def record(method):
            def save(directory, tokenizer, **kw):
                FakeFastLanguageModel.calls.append((method, {"tokenizer": tokenizer, **kw}))
                Path(directory).mkdir(parents=True, exist_ok=True)
                (Path(directory) / f"{method}.done").write_text("")

            return save

        # Unsloth patches these onto the model it returns.
        peft_model.save_pretrained_merged = record("save_pretrained_merged")
        peft_model.save_pretrained_gguf = record("save_pretrained_gguf")
        return peft_model


@pytest.fixture
def fake_unsloth(monkeypatch):
    FakeFastLanguageModel.calls = []
    monkeypatch.setitem(
        sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FakeFastLanguageModel)
    )
    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    trainer_kwargs: dict = {}

    class SpySFTTrainer(train.SFTTrainer):
        def __init__(self, **kwargs):
            trainer_kwargs.update(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(train, "SFTTrainer", SpySFTTrainer)
    return trainer_kwargs


def test_auto_picks_unsloth_only_with_gpu_and_package(make_config, monkeypatch, fake_unsloth):
    cfg = parse_config(make_config(backend="auto"))
    assert backends.resolve_backend(cfg) == "unsloth"
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    assert backends.resolve_backend(cfg) == "hf"


@pytest.mark.parametrize(
    ("export", "saver", "saver_kwargs"),
    [
        ("merged", "save_pretrained_merged", {"save_method": "merged_16bit"}),
        ("gguf", "save_pretrained_gguf", {"quantization_method": "q4_k_m"}),
    ],
)
def test_unsloth_seam(make_config, fake_unsloth, export, saver, saver_kwargs):
    cfg = parse_config(
        make_config(
            backend="unsloth",
            load_in_4bit=True,
            max_steps=2,
            eval_steps=2,
            save_steps=2,
            export=export,
            lora={"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        )
    )
    backend = backends.resolve_backend(cfg)
    result = train.run(cfg, backend)

    calls = FakeFastLanguageModel.calls
    assert calls[0] == (
        "from_pretrained",
        {
            "model_name": cfg.base_model,
            "revision": None,
            "max_seq_length": 128,
            "load_in_4bit": True,
            "dtype": None,
        },
    )
    assert calls[1] == (
        "get_peft_model",
        {
            "r": 4,
            "lora_alpha": 8,
            "lora_dropout": 0.05,
            "target_modules": ["q_proj", "v_proj"],
            "bias": "none",
            "use_gradient_checkpointing": "unsloth",
            "random_state": cfg.seed,
        },
    )
    name, kwargs = calls[2]
    assert name == saver and kwargs.pop("tokenizer") is fake_unsloth["processing_class"]
    assert kwargs == saver_kwargs
    assert (Path(result["export_dir"]) / f"{saver}.done").is_file()

    args = fake_unsloth["args"]
    assert fake_unsloth["model"].peft_config["default"].r == 4
    assert args.completion_only_loss is True and args.packing is False
    assert args.max_length == 128
    assert args.gradient_checkpointing is False  # Unsloth's own checkpointing is in place
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    assert args.report_to in ([], "none", ["none"])
    assert set(fake_unsloth["train_dataset"].column_names) == {"prompt", "completion"}
    assert result["backend"] == "unsloth" and result["global_step"] == 2
