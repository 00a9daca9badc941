"""The settings object: found home, misspelled keys refused, numbers bounded, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard import settings as settings_mod
from modelyard.settings import PROJECT_ROOT, GateSettings, Settings, SettingsError


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    return {**env, **extra}


def test_home_is_the_project_checkout_not_the_working_directory(tmp_path: Path) -> None:
    code = "from modelyard.settings import get_settings; print(get_settings().home)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()) == PROJECT_ROOT / ".local"
    assert not (tmp_path / ".local").exists()


def test_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELYARD_HOME", "somewhere")
    assert Settings().home == tmp_path / "somewhere"


def test_outside_a_checkout_the_home_must_be_explicit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELYARD_HOME", raising=False)
    monkeypatch.setattr(settings_mod, "PROJECT_ROOT", tmp_path / "site-packages")
    with pytest.raises(SettingsError, match="MODELYARD_HOME is not set"):
        Settings()


def test_a_misspelled_key_is_one_clear_line_from_the_cli(tmp_path: Path) -> None:
    env = _env(MODELYARD_HOME=str(tmp_path), MODELYARD_CURATION__NEAR_DUP_THRESHOLT="0.9")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "modelyard"), "registry", "status"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "curation.near_dup_threshol" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow").exists()


@pytest.mark.parametrize(
    "section, values",
    [
        ("gate", {"max_new_tokens": 0}),
        ("gate", {"eval_batch_size": -1}),
        ("gate", {"thresholds": {"rouge_l": {"treshold": 0.3}}}),
        ("gate", {"leak_ngram": 0}),
    ],
)
def test_sections_bound_numbers_and_forbid_unknown_keys(section: str, values: dict) -> None:
    model = {"gate": GateSettings}[section]
    with pytest.raises(ValueError):
        model.model_validate(values)


def test_one_recipe_variable_changes_that_field_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelyard.settings import Settings, _tiny_model_recipe

    monkeypatch.setenv("MODELYARD_TRAINING__RECIPE__EVAL_STEPS", "10")
    monkeypatch.setenv("MODELYARD_TRAINING__RECIPE__LORA__ALPHA", "8")
    recipe = Settings().training.recipe
    default = _tiny_model_recipe()
    assert (recipe.eval_steps, recipe.lora.alpha) == (10, 8)
    assert recipe.model_dump(exclude={"eval_steps"}) == default.model_dump(
        exclude={"eval_steps"}
    ) | {"lora": {**default.lora.model_dump(), "alpha": 8}}
