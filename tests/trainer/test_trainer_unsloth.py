"""The Unsloth backend's seam: what it asks Unsloth for, and what it does with the answers.

``unsloth_fake`` stands in for Unsloth 2026.10.9 (which needs an NVIDIA GPU) and behaves as its
source does; it hands back the real tiny model, so training, checkpoints, MLflow and the
export plumbing run for real on CPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import unsloth_fake
from trainer_helpers import write_config
from unsloth_fake import FastLanguageModel

from trainer import backends, train
from trainer.__main__ import main
from trainer.config import ConfigError, parse_config


@pytest.fixture
def llama_cpp(tmp_path, monkeypatch) -> Path:
    """A llama.cpp folder as the GPU image builds it: llama-quantize and the converter."""
    folder = tmp_path / "llama.cpp"
    folder.mkdir()
    quantizer = folder / "llama-quantize"
    quantizer.write_text("#!/bin/sh\necho 'usage: llama-quantize [options] in out type'\n")
    quantizer.chmod(0o755)
    (folder / "convert_hf_to_gguf.py").write_text("# llama.cpp's converter\n")
    monkeypatch.setenv("UNSLOTH_LLAMA_CPP_PATH", str(folder))
    return folder


@pytest.fixture
def fake_unsloth(monkeypatch):
    """Install the fake as ``import unsloth`` would: modules, a GPU, Unsloth's SFTConfig.

    The zoo reads UNSLOTH_LLAMA_CPP_PATH when it is imported: request ``llama_cpp`` first."""
    FastLanguageModel.calls = []
    FastLanguageModel.hub, FastLanguageModel.mapper = {}, {}
    FastLanguageModel.allow_prequantized = True
    unsloth_fake.FakeConversion.writes_files = True
    for name, module in unsloth_fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    monkeypatch.setattr(train, "SFTConfig", unsloth_fake.UnslothSFTConfig)
    trainer_kwargs: dict = {}

    class SpySFTTrainer(train.SFTTrainer):
        def __init__(self, **kwargs):
            trainer_kwargs.update(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(train, "SFTTrainer", SpySFTTrainer)
    return trainer_kwargs


def _unsloth_config(make_config, **overrides):
    return parse_config(
        make_config(
            backend="unsloth",
            load_in_4bit=True,
            max_steps=2,
            eval_steps=2,
            save_steps=2,
            lora={"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
            **overrides,
        )
    )


def test_auto_picks_unsloth_only_with_gpu_and_package(make_config, monkeypatch, fake_unsloth):
    cfg = parse_config(make_config(backend="auto"))
    assert backends.resolve_backend(cfg) == "unsloth"
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    assert backends.resolve_backend(cfg) == "hf"


def test_unsloth_seam_merged(make_config, fake_unsloth):
    cfg = _unsloth_config(make_config, export="merged")
    result = train.run(cfg, backends.resolve_backend(cfg))

    calls = dict(FastLanguageModel.calls[:1])
    loaded = calls["from_pretrained"]
    assert (loaded["model_name"], loaded["revision"]) == (cfg.base_model, None)
    assert (loaded["max_seq_length"], loaded["load_in_4bit"], loaded["dtype"]) == (128, True, None)
    assert loaded["use_exact_model_name"] is True
    name, peft = FastLanguageModel.calls[2]
    assert name == "get_peft_model" and peft == {
        "r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.05,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "use_gradient_checkpointing": "unsloth",
        "random_state": cfg.seed,
    }
    name, saved = FastLanguageModel.calls[3]
    assert name == "save_pretrained_merged" and saved["save_method"] == "merged_16bit"
    assert saved["tokenizer"] is fake_unsloth["processing_class"]
    assert (Path(result["export_dir"]) / "model.safetensors").is_file()

    args = fake_unsloth["args"]
    assert fake_unsloth["model"].peft_config["default"].r == 4
    assert args.completion_only_loss is True and args.packing is False
    assert args.max_length == 128
    assert args.gradient_checkpointing is False  # Unsloth's own checkpointing is in place
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    assert args.report_to in ([], "none", ["none"])
    assert set(fake_unsloth["train_dataset"].column_names) == {"prompt", "completion"}
    assert result["backend"] == "unsloth" and result["global_step"] == 2


def test_the_recipe_wins_over_unsloths_own_defaults(make_config, fake_unsloth):
    """Unsloth's SFTConfig defaults to adamw_8bit and padding-free batches; the run must train
    exactly the recipe (the same optimizer on both backends), so every knob is set."""
    cfg = _unsloth_config(make_config, optim="adamw_torch", weight_decay=0.0, grad_accum=1)
    train.run(cfg, "unsloth")
    args = fake_unsloth["args"]
    assert (args.optim, args.padding_free) == ("adamw_torch", False)
    assert (args.weight_decay, args.seed, args.learning_rate) == (0.0, cfg.seed, cfg.learning_rate)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 1)
    assert args.logging_steps == cfg.logging_steps


def test_hub_names_are_loaded_exactly_with_their_revision(make_config, fake_unsloth, tiny_model):
    FastLanguageModel.hub = {"acme/Tiny-Llama": str(tiny_model)}
    FastLanguageModel.hub["unsloth/Tiny-Llama-bnb-4bit"] = str(tiny_model)
    FastLanguageModel.mapper = {"acme/Tiny-Llama": "unsloth/Tiny-Llama-bnb-4bit"}
    cfg = _unsloth_config(make_config, base_model="acme/Tiny-Llama", base_revision="0123abcd")
    backends.load(cfg, "unsloth")
    loaded = dict(c for c in FastLanguageModel.calls if c[0] == "loaded")["loaded"]
    assert loaded == {"model_name": "acme/Tiny-Llama", "revision": "0123abcd", "4bit": True}


@pytest.mark.parametrize(
    ("base_model", "prequantized_ok", "error"),
    [
        # AMD Instinct: Unsloth strips "-bnb-4bit" even with use_exact_model_name.
        ("acme/Tiny-Llama-bnb-4bit", False, r"^base_model: Unsloth would load 'acme/Tiny-Llama'"),
        # A 16-bit hub repo silently loads in 16 bit, whatever load_in_4bit says.
        ("acme/Tiny-Llama-bf16", True, r"^load_in_4bit: Unsloth loads the 16-bit hub repo"),
    ],
)
def test_other_substitutions_are_refused_before_loading(
    make_config, fake_unsloth, base_model, prequantized_ok, error
):
    FastLanguageModel.allow_prequantized = prequantized_ok
    cfg = _unsloth_config(make_config, base_model=base_model)
    with pytest.raises(ConfigError, match=error):
        backends.load(cfg, "unsloth")
    assert not any(c[0] == "loaded" for c in FastLanguageModel.calls)


def test_gguf_is_delivered_from_where_unsloth_writes_it(make_config, llama_cpp, fake_unsloth):
    cfg = _unsloth_config(make_config, export="gguf", gguf_quantization="q4_k_m")
    cfg.mirror_dir = str(cfg.output_dir.parent / "mirror")
    result = train.run(cfg, backends.resolve_backend(cfg))

    name, saved = FastLanguageModel.calls[3]
    assert name == "save_pretrained_gguf" and saved["quantization_method"] == "q4_k_m"
    export_dir = Path(result["export_dir"])
    assert result["export_files"] == ["Modelfile", "tiny-llama.Q4_K_M.gguf"]
    assert (export_dir / "tiny-llama.Q4_K_M.gguf").read_bytes().startswith(b"GGUF")
    assert not list(export_dir.glob("*.safetensors"))  # not the 16-bit merge it converted from
    mirrored = Path(cfg.mirror_dir) / "gguf" / "tiny-llama.Q4_K_M.gguf"
    assert mirrored.read_bytes().startswith(b"GGUF")
    leftovers = [p.name for p in cfg.output_dir.iterdir() if "gguf" in p.name or "merge" in p.name]
    assert leftovers == ["gguf"]  # the merge and Unsloth's sibling folder are cleaned up


def test_an_export_without_a_gguf_file_fails_loudly(make_config, llama_cpp, fake_unsloth, capsys):
    unsloth_fake.FakeConversion.writes_files = False
    cfg = make_config(backend="unsloth", export="gguf", max_steps=2, eval_steps=2, save_steps=2)
    config_file = write_config(cfg, Path(cfg["output_dir"]).parent / "gguf.json")
    assert main(["--config", str(config_file)]) == 1
    err = capsys.readouterr().err  # progress bars also go to stderr
    last = err.strip().splitlines()[-1]
    assert last.startswith("trainer: export: Unsloth's save_pretrained_gguf delivered no valid")
    assert "Traceback" not in err
    assert not (Path(cfg["output_dir"]) / "gguf").exists()
    assert not (Path(cfg["output_dir"]) / "result.json").exists()


@pytest.mark.parametrize("missing", ["folder", "quantizer"])
def test_gguf_without_llama_cpp_fails_before_training(
    make_config, llama_cpp, fake_unsloth, tmp_path, monkeypatch, missing
):
    if missing == "folder":
        monkeypatch.setenv("UNSLOTH_LLAMA_CPP_PATH", str(tmp_path / "nowhere"))
    else:
        (llama_cpp / "llama-quantize").unlink()
    reimported = unsloth_fake.zoo_llama_cpp()  # it reads UNSLOTH_LLAMA_CPP_PATH at import
    monkeypatch.setitem(sys.modules, "unsloth_zoo.llama_cpp", reimported)
    monkeypatch.setattr(sys.modules["unsloth_zoo"], "llama_cpp", reimported)
    cfg = _unsloth_config(make_config, export="gguf")
    with pytest.raises(ConfigError, match=r"^export: gguf needs a built llama.cpp at UNSLOTH_LLAM"):
        train.run(cfg, "unsloth")
    assert FastLanguageModel.calls == []  # refused before the model was touched
    assert not (cfg.output_dir / "checkpoints").exists()


def test_gguf_quantization_is_checked_against_the_installed_unsloth(
    make_config, llama_cpp, fake_unsloth, monkeypatch
):
    monkeypatch.delitem(unsloth_fake.ALLOWED_QUANTS, "q3_k_xs")  # an Unsloth that dropped it
    cfg = _unsloth_config(make_config, export="gguf", gguf_quantization="q3_k_xs")
    with pytest.raises(ConfigError, match=r"^gguf_quantization: 'q3_k_xs' is not accepted"):
        train.run(cfg, "unsloth")
    assert FastLanguageModel.calls == []


def test_a_resume_under_another_backend_or_optimizer_is_refused(
    make_config, fake_unsloth, monkeypatch, capsys
):
    cfg = make_config(backend="auto", max_steps=2, eval_steps=2, save_steps=2)
    config_file = write_config(cfg, Path(cfg["output_dir"]).parent / "auto.json")
    assert main(["--config", str(config_file)]) == 0  # unsloth: a GPU and Unsloth are here
    sealed = json.loads(
        (
            Path(cfg["output_dir"]) / "checkpoints" / "checkpoint-2" / "modelyard-sealed.json"
        ).read_text()
    )
    assert sealed["backend"] == "unsloth"

    capsys.readouterr()
    monkeypatch.setattr(backends, "cuda_available", lambda: False)  # the retry lands on CPU
    assert main(["--config", str(config_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1  # refused before any data or model was loaded
    assert err.startswith("trainer: config error: resume: checkpoint-2 in ")
    assert "on backend unsloth, this run is recipe" in err and "on backend hf" in err

    other_optim = write_config(cfg | {"optim": "adamw_torch"}, config_file.with_name("o.json"))
    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    assert main(["--config", str(other_optim)]) == 2
    assert "config error: resume: checkpoint-2" in capsys.readouterr().err
    checkpoints = Path(cfg["output_dir"]) / "checkpoints"
    assert [p.name for p in checkpoints.glob("checkpoint-*")] == ["checkpoint-2"]
