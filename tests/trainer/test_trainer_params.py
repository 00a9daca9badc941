"""One schema from settings to the trainer: finetune_model's Params come from the trainer's
pydantic model, submit with their defaults, and reach the trainer's config through it."""

from __future__ import annotations

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from modelyard.training import FORM_FIELDS, build_trainer_config, trigger_params
from trainer.config import GGUF_QUANTIZATIONS, ConfigError, TrainerConfig, TrainingRecipe

NAMES = ["dataset_version", "base_model", *(path.replace(".", "_") for path in FORM_FIELDS)]


def _params(settings) -> ParamsDict:
    return ParamsDict({name: Param(**spec) for name, spec in trigger_params(settings).items()})


def test_every_param_submits_with_its_default(settings):
    params = _params(settings)
    assert list(params.keys()) == NAMES
    assert params.validate() == dict.fromkeys(NAMES)  # what the trigger form sends untouched
    for name in NAMES:
        param = params.get_param(name)
        assert param.schema["type"][0] == "null", name
        assert len(param.description) > 40, name  # a sentence, not a label


def test_types_bounds_and_choices_come_from_the_trainer_schema(settings):
    specs = trigger_params(settings)
    assert specs["lora_r"]["type"] == ["null", "integer"]
    assert specs["lora_r"]["exclusiveMinimum"] == 0 and specs["lora_r"]["maximum"] == 1024
    assert specs["learning_rate"]["type"] == ["null", "number"]
    assert specs["load_in_4bit"]["type"] == ["null", "boolean"]
    assert specs["backend"]["enum"] == [None, "auto", "hf", "unsloth"]
    assert specs["gguf_quantization"]["enum"] == [None, *GGUF_QUANTIZATIONS]
    assert specs["export"]["values_display"]["null"] == "settings value: adapter"
    field = TrainingRecipe.model_fields["grad_accum"]
    assert specs["grad_accum"]["description"].startswith(field.description.rstrip("."))
    # The empty value is explained with what it stands for: the current settings.
    settings.training.recipe.batch_size = 3
    assert trigger_params(settings)["batch_size"]["description"].endswith(
        "Empty: the settings value, 3."
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lora_r", 0),
        ("lora_r", 2.5),
        ("learning_rate", -1e-3),
        ("backend", "tpu"),
        ("optim", "adam"),
        ("export", "onnx"),
        ("gguf_quantization", "q9_k"),
        ("batch_size", "8"),
        ("load_in_4bit", "yes"),
    ],
)
def test_bad_values_are_rejected_by_the_form_validation(settings, name, value):
    with pytest.raises(ParamValidationError):
        _params(settings).get_param(name).resolve(value)


def test_params_reach_the_trainer_config(settings, curated):
    dataset = {"path": str(curated), "version": "ds-0123456789ab"}
    defaults = build_trainer_config(dict.fromkeys(NAMES), dataset, "r1", settings)
    recipe = settings.training.recipe
    assert TrainerConfig.model_validate(defaults).model_dump(mode="json") == defaults
    assert defaults["learning_rate"] == recipe.learning_rate
    assert defaults["lora"] == recipe.lora.model_dump()
    assert defaults["data_version"] == "ds-0123456789ab"
    assert defaults["train_file"] == f"{curated}/train.jsonl"

    chosen = {
        "backend": "hf",
        "load_in_4bit": True,
        "lora_r": 4,
        "learning_rate": 1e-3,
        "max_steps": 7,
        "batch_size": 2,
        "grad_accum": 4,
        "max_seq_length": 64,
        "optim": "adamw_torch",
        "export": "merged",
        "gguf_quantization": "q8_0",
        "base_model": "/models/other",
    }
    config = TrainerConfig.model_validate(build_trainer_config(chosen, dataset, "r2", settings))
    assert (config.backend, config.load_in_4bit, config.lora.r) == ("hf", True, 4)
    assert config.lora.scaling_alpha == 8  # alpha follows r unless the settings pin it
    assert (config.learning_rate, config.max_steps) == (1e-3, 7)
    assert (config.batch_size, config.grad_accum, config.max_seq_length) == (2, 4, 64)
    assert (config.optim, config.export, config.gguf_quantization) == (
        "adamw_torch",
        "merged",
        "q8_0",
    )
    assert config.base_model == "/models/other"
    assert config.eval_steps == recipe.eval_steps  # not on the form: the settings value


def test_a_bad_combination_is_one_line_naming_the_field(settings, curated):
    dataset = {"path": str(curated), "version": None}
    with pytest.raises(ConfigError, match=r"^export: gguf .* needs backend unsloth"):
        build_trainer_config({"backend": "hf", "export": "gguf"}, dataset, "r", settings)
    with pytest.raises(ConfigError, match=r"^lora\.r: Input should be greater than 0"):
        build_trainer_config({"lora_r": 0}, dataset, "r", settings)


def test_settings_embed_the_trainers_recipe(monkeypatch, tmp_path):
    from modelyard import settings as settings_mod

    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    monkeypatch.setenv("MODELYARD_TRAINING__RECIPE__OPTIM", "adamw_8bit")
    monkeypatch.setenv("MODELYARD_TRAINING__RECIPE__LORA__R", "32")
    settings_mod.get_settings.cache_clear()
    try:
        recipe = settings_mod.get_settings().training.recipe
        assert isinstance(recipe, TrainingRecipe)
        assert (recipe.optim, recipe.lora.r) == ("adamw_8bit", 32)
        monkeypatch.setenv("MODELYARD_TRAINING__RECIPE__GGUF_QUANTIZATION", "q9_k")
        settings_mod.get_settings.cache_clear()
        with pytest.raises(settings_mod.SettingsError, match="training.recipe.gguf_quantization"):
            settings_mod.get_settings()
    finally:
        settings_mod.get_settings.cache_clear()
