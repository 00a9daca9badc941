"""Bad configs fail before any model loads, with one line that names the field, exit code 2."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
import yaml
from trainer_helpers import CHILD_ENV, trainer_cmd, write_config

from trainer.__main__ import main
from trainer.config import load_config


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"learning_rte": 1e-3}, "learning_rte"),
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"base_model": "/nonexistent/models/llama"}, "base_model"),
        ({"max_seq_length": 4096}, "max_seq_length"),
        ({"save_steps": 15}, "save_steps"),
        ({"export": "gguf"}, "export"),
        ({"lora": {"r": 4, "rank": 4}}, "lora.rank"),
        ({"backend": "unsloth"}, "backend"),  # no GPU here: a clear error, not an import traceback
        ({"gguf_quantization": "q9_k"}, "gguf_quantization"),  # before training, not after
        ({"optim": "adamw_8bit"}, "optim"),  # bitsandbytes needs a GPU
        ({"padding_free": True}, "padding_free"),
        ({"train_file": "/nonexistent/data/train.jsonl"}, "train_file"),
    ],
)
def test_bad_config_is_one_line_naming_the_field(make_config, tmp_path, capsys, change, field):
    cfg = make_config(**change)
    assert main(["--config", str(write_config(cfg, tmp_path / "bad.json"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"trainer: config error: {field}: "), err
    assert not (tmp_path / "run").exists()  # failed before touching the run dir


def test_unreachable_storage_is_named_not_called_missing(
    make_config, tmp_path, capsys, monkeypatch
):
    from tests.net import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    cfg = make_config(train_file="s3://modelyard-data/datasets/ds-1/train.jsonl")
    assert main(["--config", str(write_config(cfg, tmp_path / "s3.json"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "trainer: config error: train_file: cannot reach s3://modelyard-data/datasets/ds-1/"
        "train.jsonl: Could not connect to the endpoint URL"
    ), err


def test_missing_base_model_key(make_config, tmp_path, capsys):
    cfg = make_config()
    del cfg["base_model"]
    assert main(["--config", str(write_config(cfg, tmp_path / "bad.json"))]) == 2
    assert capsys.readouterr().err.strip() == "trainer: config error: base_model: Field required"


def test_cli_exit_code_and_stderr(make_config, tmp_path):
    cfg_file = write_config(make_config(learning_rate=-1), tmp_path / "bad.json")
    done = subprocess.run(
        trainer_cmd(cfg_file),
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **CHILD_ENV},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "trainer: config error: learning_rate: Input should be greater than 0"
    ]


def test_yaml_and_json_configs_are_the_same(make_config, tmp_path):
    cfg = make_config()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert load_config(tmp_path / "c.yaml") == load_config(write_config(cfg, tmp_path / "c.json"))


def test_config_hash_names_the_recipe_not_where_it_runs(tmp_path):
    from trainer.config import parse_config

    base = {
        "base_model": "m",
        "train_file": "a/train.jsonl",
        "eval_file": "a/eval.jsonl",
        "output_dir": "run-1",
        "data_version": "ds-1",
        "mlflow": {"tracking_uri": "sqlite://"},
    }
    moved = base | {
        "output_dir": "run-2",
        "train_file": "b/train.jsonl",
        "eval_file": "b/eval.jsonl",
        "mlflow": {"tracking_uri": "http://x"},
    }
    recipe = parse_config(base).config_hash()
    assert recipe == parse_config(moved).config_hash()
    assert recipe != parse_config(base | {"lora": {"r": 4}}).config_hash()
    assert recipe != parse_config(base | {"data_version": "ds-2"}).config_hash()
    # What Unsloth would otherwise choose itself is part of the recipe too.
    assert recipe != parse_config(base | {"optim": "adamw_torch"}).config_hash()
    assert recipe != parse_config(base | {"backend": "unsloth", "padding_free": True}).config_hash()


def test_without_eval_file_validation_is_a_seeded_slice_of_train(curated):
    from trainer.config import parse_config
    from trainer.data import load_splits

    cfg = parse_config(
        {
            "base_model": "m",
            "train_file": str(curated / "train.jsonl"),
            "output_dir": "run",
            "validation_fraction": 0.2,
            "seed": 3,
            "mlflow": {"tracking_uri": "sqlite://"},
        }
    )
    train, validation = load_splits(cfg)
    total = len((curated / "train.jsonl").read_text().splitlines())
    assert len(train) + len(validation) == total and len(validation) == math.ceil(0.2 * total)
    prompts = {str(row["prompt"]) for row in train}
    assert not any(str(row["prompt"]) in prompts for row in validation)
    assert [r["prompt"] for r in load_splits(cfg)[1]] == [r["prompt"] for r in validation]


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("a home", "which no training run wrote"),  # a run replaces adapter/ and result.json
        ("a file", "is a file, not a run directory"),
        ("mirror is the run dir", "mirror_dir: "),
    ],
)
def test_a_run_dir_that_is_not_a_runs_is_refused(make_config, tmp_path, capsys, where, says):
    home = tmp_path / "home"
    (home / "adapter").mkdir(parents=True)
    (home / "adapter" / "notes.txt").write_text("years of notes\n")
    (home / "result.json").write_text("keep\n")
    changes = {
        "a home": {"output_dir": str(home)},
        "a file": {"output_dir": str(home / "result.json")},
        "mirror is the run dir": {"mirror_dir": str(tmp_path / "run")},
    }[where]
    cfg = make_config(**changes)
    assert main(["--config", str(write_config(cfg, tmp_path / "bad.json"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert (home / "adapter" / "notes.txt").read_text() == "years of notes\n"
    assert (home / "result.json").read_text() == "keep\n"


ONE_RECORD = json.dumps(
    {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
)


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ("", "holds no records"),
        ('{"text": "hi"}\n', "need a 'messages' column"),
        ('{"messages": []}\n', "messages are not turns ending in the answer"),
        ("not json at all\n", "is not JSON lines of records"),
        (ONE_RECORD, "leave none to train on"),
    ],
)
def test_a_train_file_that_cannot_be_trained_on_is_one_config_error(
    make_config, tmp_path, capsys, lines, says
):
    """Exit 2, not a traceback with exit 1: the launcher retries an exit 1, in vain here."""
    data = tmp_path / "data.jsonl"
    data.write_text(lines)
    cfg = make_config(train_file=str(data), eval_file=None)
    assert main(["--config", str(write_config(cfg, tmp_path / "bad.json"))]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]  # after the datasets library's progress bars
    assert last.startswith("trainer: config error: train_file: ") and says in last, err
