"""`--config` and `--eval-reference` mistakes are one clear line (exit 2), never a traceback,
and every CurationSettings number is bounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from curation_planting import edited, long_record, read_jsonl, write_lines
from pydantic import ValidationError

from modelyard.cli import main
from modelyard.settings import CurationSettings, Settings


@pytest.fixture
def partition(store: Settings, tmp_path: Path) -> Path:
    rows = [long_record(seed, f"r{seed}") for seed in range(30)]
    return write_lines(tmp_path / "raw" / "part-0.jsonl", rows)


def _curate(capsys: pytest.CaptureFixture, partition: Path, *extra: str) -> tuple[int, list[str]]:
    out = partition.parent.parent / "out"
    code = main(["curate", "--input", str(partition), "--output", str(out), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err.strip().splitlines()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param(b"- near_dup_threshold: 0.9\n", "expected a mapping", id="a list"),
        pytest.param(b"just words\n", "expected a mapping", id="a scalar"),
        pytest.param(b"eval_fraction: [0.2\n", "not YAML/JSON", id="malformed YAML"),
        pytest.param(b'{"eval_fraction": 0.2', "not YAML/JSON", id="malformed JSON"),
        pytest.param(b"\xff\xfe\x00e", "not UTF-8", id="not text"),
        pytest.param(b"near_dup_treshold: 0.9\n", "near_dup_treshold: Extra inputs", id="typo"),
        pytest.param(b"1: 2\n", "Keys should be strings", id="a number as key"),
        pytest.param(b"curation:\n  eval_fraction: 0.3\n", "curation: Extra", id="nested"),
        pytest.param(b"minhash_perm: 0\n", "minhash_perm: Input should be greater", id="perm 0"),
        pytest.param(b"near_dup_ngram: -3\n", "near_dup_ngram: Input should be", id="n < 0"),
        pytest.param(b"contamination_ngram: 0\n", "contamination_ngram", id="n = 0"),
        pytest.param(b"batch_size: many\n", "batch_size: Input should be", id="not a number"),
        pytest.param(b"[" * 3000 + b"]" * 3000, "nested too deeply", id="deep YAML"),
        pytest.param(
            b"workers: 1\nbatch_size: 64\nworkers: 2\n", "given twice: workers", id="twice"
        ),
        pytest.param(b'{"a": {"k": 1, "k": 2}}', "key given twice: k", id="twice nested"),
        pytest.param(b'{"x": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested too deeply", id="deep"),
    ],
)
def test_a_bad_config_is_one_line(
    partition: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    content: bytes,
    says: str,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    code, errors = _curate(capsys, partition, "--config", str(config))
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].startswith(f"modelyard: error: invalid config {config}") and says in errors[0]


def test_an_empty_config_changes_nothing(
    partition: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("# nothing to override\n")
    assert _curate(capsys, partition, "--config", str(config)) == (0, [])


def test_every_number_of_curation_settings_is_bounded() -> None:
    for name, field in CurationSettings.model_fields.items():
        if field.annotation not in (int, float):
            continue
        bounds = {type(m).__name__ for m in field.metadata}
        assert bounds & {"Ge", "Gt"}, f"{name} has no lower bound"
    for bad in ({"minhash_perm": 0}, {"near_dup_ngram": -1}, {"max_line_bytes": 0}):
        with pytest.raises(ValidationError):
            CurationSettings(**bad)
    with pytest.raises(ValidationError, match="Extra inputs"):
        CurationSettings(near_dup_treshold=0.9)


def _reference_shapes(leak: dict) -> dict[str, dict]:
    prompt, completion = leak["prompt"], leak["completion"]
    head, body = prompt.split("\n", 1)
    return {
        "prompt/completion": {"id": "ref", "prompt": prompt, "completion": completion},
        "instruction": {"id": "ref", "instruction": head, "input": body, "output": completion},
        "messages": {
            "id": "ref",
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": completion},
            ],
        },
    }


@pytest.mark.parametrize("shape", ["prompt/completion", "instruction", "messages"])
def test_the_eval_reference_takes_every_shape_curation_takes(
    store: Settings, tmp_path: Path, capsys: pytest.CaptureFixture, shape: str
) -> None:
    leak = long_record(7)
    rows = [{**edited(leak), "id": "leak"}] + [long_record(s, f"r{s}") for s in range(100, 130)]
    partition = write_lines(tmp_path / "raw" / "part-0.jsonl", rows)
    reference = write_lines(tmp_path / "suite.jsonl", [_reference_shapes(leak)[shape]])
    code, errors = _curate(capsys, partition, "--eval-reference", str(reference))
    assert (code, errors) == (0, [])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["contamination"]["rejected_by_source"] == {"eval_reference": 1}
    [rejected] = read_jsonl(tmp_path / "out" / "rejected.jsonl")
    assert (rejected["id"], rejected["duplicate_of"]) == ("leak", "ref")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        pytest.param({"prompt": "p", "completion": "c"}, "line 2: no id", id="no id"),
        pytest.param(b'{"id": "x", "prompt": ', "line 2: not JSON", id="malformed"),
        pytest.param({"id": "x", "question": "q"}, "line 2: no prompt/completion", id="shape"),
        pytest.param(
            b'{"id": "\\ud800", "prompt": "p", "completion": "c"}', "surrogate", id="ud800"
        ),
    ],
)
def test_a_bad_eval_reference_is_one_line(
    partition: Path, tmp_path: Path, capsys: pytest.CaptureFixture, line, says: str
) -> None:
    reference = write_lines(
        tmp_path / "suite.jsonl", [{"id": "ok", "prompt": "p", "completion": "c"}, line]
    )
    code, errors = _curate(capsys, partition, "--eval-reference", str(reference))
    assert code == 2 and len(errors) == 1, errors
    assert (
        errors[0].startswith(f"modelyard: error: eval reference {reference}") and says in errors[0]
    )
    code, errors = _curate(capsys, partition, "--eval-reference", str(tmp_path / "missing.jsonl"))
    assert code == 2 and len(errors) == 1 and "eval reference not found" in errors[0]
    (tmp_path / "refs").mkdir()
    code, errors = _curate(capsys, partition, "--eval-reference", str(tmp_path / "refs"))
    assert code == 2 and len(errors) == 1 and "is not a file" in errors[0], errors
