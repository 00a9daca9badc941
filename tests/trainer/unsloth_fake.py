"""A stand-in for Unsloth 2026.10.9 at the trainer's seam, behaving as its source does.

Unsloth cannot run here (it needs an NVIDIA GPU; importing it raises without one). Each piece
below reproduces what the real code does with the calls the trainer makes, read from the
released source (``unsloth/models/loader.py``, ``unsloth/save.py``, ``unsloth/models/rl.py``,
``unsloth_zoo/llama_cpp.py``), and hands back the real tiny model, so everything after loading
(SFTTrainer, checkpoints, MLflow, export) runs for real on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import subprocess
import types
from pathlib import Path
from typing import ClassVar

from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig

log = logging.getLogger("unsloth")

# unsloth/save.py ALLOWED_QUANTS (keys) at 2026.10.9.
ALLOWED_QUANTS = dict.fromkeys(
    "not_quantized fast_quantized quantized f32 bf16 f16 q8_0 q4_k_m q5_k_m q2_k q2_k_l q3_k_l "
    "q3_k_m q3_k_s q4_0 q4_1 q4_k_s q4_k q5_k q5_0 q5_1 q5_k_s q6_k q3_k_xs".split(),
    "",
)


class FastLanguageModel:
    calls: ClassVar[list[tuple[str, dict]]] = []
    #: Hub names the fake can "download": name -> local directory.
    hub: ClassVar[dict[str, str]] = {}
    #: unsloth/mapper.py: a hub name -> Unsloth's pre-quantized mirror (load_in_4bit=True).
    mapper: ClassVar[dict[str, str]] = {}
    #: False on AMD Instinct with old bitsandbytes: "-bnb-4bit" repos are stripped to the base.
    allow_prequantized: ClassVar[bool] = True

    @staticmethod
    def from_pretrained(
        model_name="unsloth/Llama-3.2-1B-Instruct",
        max_seq_length=2048,
        dtype=None,
        load_in_4bit=True,
        load_in_8bit=False,
        load_in_16bit=False,
        full_finetuning=False,
        token=None,
        use_gradient_checkpointing="unsloth",
        revision=None,
        use_exact_model_name=False,
        random_state=3407,
        *,
        on_model_resolved=None,
    ):
        FastLanguageModel.calls.append(("from_pretrained", dict(locals())))
        old_model_name = model_name
        if not use_exact_model_name and load_in_4bit:
            model_name = FastLanguageModel.mapper.get(model_name, model_name)
        # Not governed by use_exact_model_name (loader.py: "the transforms below do not").
        if not FastLanguageModel.allow_prequantized and model_name.lower().endswith("-bnb-4bit"):
            model_name = model_name[: -len("-bnb-4bit")]
        if on_model_resolved is not None:
            on_model_resolved(model_name)
        if model_name.lower().endswith("-bf16") and not os.path.isdir(model_name):
            load_in_4bit = False  # 16-bit hub checkpoints load in 16 bit
        if revision is not None and model_name.lower() != old_model_name.lower():
            log.warning("Unsloth: Ignoring revision = `%s`", revision)
            revision = None
        FastLanguageModel.calls.append(
            ("loaded", {"model_name": model_name, "revision": revision, "4bit": load_in_4bit})
        )
        path = FastLanguageModel.hub.get(model_name, model_name)
        return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)

    @staticmethod
    def get_peft_model(model, **kwargs):
        FastLanguageModel.calls.append(("get_peft_model", kwargs))
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
        # Unsloth patches these onto the model it returns (save.py: patch_saving_functions).
        peft_model.save_pretrained_merged = types.MethodType(save_pretrained_merged, peft_model)
        peft_model.save_pretrained_gguf = types.MethodType(save_pretrained_gguf, peft_model)
        return peft_model


def _merge_16bit(model, save_directory: str, tokenizer) -> None:
    """``save_method="merged_16bit"``: base + LoRA merged into ``save_directory`` itself."""
    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(save_directory)
    tokenizer.save_pretrained(save_directory)


def save_pretrained_merged(self, save_directory, tokenizer=None, save_method="merged_16bit"):
    FastLanguageModel.calls.append(
        ("save_pretrained_merged", {"tokenizer": tokenizer, "save_method": save_method})
    )
    _merge_16bit(self, str(save_directory), tokenizer)


def save_pretrained_gguf(
    self, save_directory, tokenizer=None, quantization_method="fast_quantized", **kwargs
):
    """save.py ``unsloth_save_pretrained_gguf``: merge into ``save_directory``, then convert with
    llama.cpp into the SIBLING ``f"{save_directory}_gguf"`` and return where the files are."""
    FastLanguageModel.calls.append(
        (
            "save_pretrained_gguf",
            {"tokenizer": tokenizer, "quantization_method": quantization_method},
        )
    )
    if tokenizer is None:
        raise ValueError("Unsloth: Saving to GGUF must have a tokenizer.")
    save_directory = os.path.normpath(os.fspath(save_directory))
    _merge_16bit(self, save_directory, tokenizer)  # the merge comes first, then the checks
    method = {"not_quantized": "f16", "fast_quantized": "q8_0", "quantized": "q4_k_m"}.get(
        quantization_method.lower(), quantization_method.lower()
    )
    if method not in ALLOWED_QUANTS:
        raise RuntimeError(f"Unsloth: Quant method = [{method}] not supported.")
    zoo = __import__("unsloth_zoo.llama_cpp", fromlist=["check_llama_cpp"])
    try:
        zoo.check_llama_cpp()
    except RuntimeError:
        raise RuntimeError(  # the real one downloads or clones llama.cpp from GitHub here
            "Unsloth: Installing llama.cpp: no network in this test"
        ) from None
    gguf_directory = f"{save_directory}_gguf"
    os.makedirs(gguf_directory, exist_ok=True)
    name = os.path.basename(os.path.normpath(self.config._name_or_path))
    produced = [os.path.join(gguf_directory, f"{name}.{method.upper()}.gguf")]
    if FakeConversion.writes_files:
        Path(produced[0]).write_bytes(b"GGUF" + bytes(64))
    else:
        produced = []
    modelfile = os.path.join(gguf_directory, "Modelfile")
    Path(modelfile).write_text(f"FROM ./{name}.{method.upper()}.gguf\n")
    return {
        "save_directory": save_directory,
        "gguf_directory": gguf_directory,
        "gguf_files": produced,
        "modelfile_location": modelfile,
    }


class FakeConversion:
    """``writes_files = False``: a conversion that reports success and leaves no .gguf (the
    trainer's backstop; whatever the cause, no file must never pass as an export)."""

    writes_files: ClassVar[bool] = True


def zoo_llama_cpp() -> types.ModuleType:
    """unsloth_zoo.llama_cpp: the folder comes from UNSLOTH_LLAMA_CPP_PATH, read at import."""
    module = types.ModuleType("unsloth_zoo.llama_cpp")
    module.LLAMA_CPP_DEFAULT_DIR = os.environ.get(
        "UNSLOTH_LLAMA_CPP_PATH", os.path.join(str(Path.home()), ".unsloth", "llama.cpp")
    )

    def check_llama_cpp(llama_cpp_folder=module.LLAMA_CPP_DEFAULT_DIR):
        if not os.path.exists(llama_cpp_folder):
            raise RuntimeError(f"llama.cpp folder '{llama_cpp_folder}' does not exist")
        quantizer = os.path.join(llama_cpp_folder, "llama-quantize")
        if not os.access(quantizer, os.X_OK):
            raise RuntimeError(f"Unsloth: No working quantizer found in {llama_cpp_folder}")
        done = subprocess.run([quantizer, "--help"], capture_output=True, text=True, timeout=5)
        if done.returncode and "usage" not in (done.stdout + done.stderr).lower():
            raise RuntimeError(f"Unsloth: No working quantizer found in {llama_cpp_folder}")
        converter = os.path.join(llama_cpp_folder, "convert_hf_to_gguf.py")
        if not os.path.isfile(converter):
            raise RuntimeError(f"Unsloth: Failed to find converter script in {llama_cpp_folder}")
        return quantizer, converter

    module.check_llama_cpp = check_llama_cpp
    return module


@dataclasses.dataclass
class UnslothSFTConfig(SFTConfig):
    """``trl.SFTConfig`` as Unsloth replaces it on import: other defaults (models/rl.py)."""

    optim: str = "adamw_8bit"
    padding_free: bool | None = None  # None: Unsloth decides, and turns it on for text models
    eval_accumulation_steps: int | None = 2
    weight_decay: float = 0.001
    seed: int = 3407
    learning_rate: float = 5e-05
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 2
    logging_steps: float = 1

    def __post_init__(self):
        if self.padding_free is None:  # trainer.py _should_auto_padding_free -> on
            self.padding_free = True
        super().__post_init__()


def modules() -> dict[str, types.ModuleType]:
    """The ``sys.modules`` entries of an installed Unsloth."""
    unsloth = types.ModuleType("unsloth")
    unsloth.FastLanguageModel = FastLanguageModel
    save = types.ModuleType("unsloth.save")
    save.ALLOWED_QUANTS = ALLOWED_QUANTS
    unsloth.save = save
    zoo = types.ModuleType("unsloth_zoo")
    zoo.llama_cpp = zoo_llama_cpp()
    return {
        "unsloth": unsloth,
        "unsloth.save": save,
        "unsloth_zoo": zoo,
        "unsloth_zoo.llama_cpp": zoo.llama_cpp,
    }
