"""`modelyard curate --output` never destroys data: it refuses an output that overlaps an
input (however spelled) or holds anything it did not write, in one line, exit 2."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest
from curation_planting import write_lines

from modelyard.cli import main
from modelyard.curation.pipeline import curate
from modelyard.sampledata import write_partition
from modelyard.settings import CurationSettings, Settings


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _curate(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[str]]:
    code = main(["curate", *args])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def raw(store: Settings, tmp_path: Path) -> Path:
    """A raw tree: raw/<date>/part-0.jsonl, plus a user's own notes next to it."""
    root = tmp_path / "raw"
    write_partition(root, date(2026, 11, 20), n=30)
    (root / "NOTES.txt").write_text("my notes\n")
    return root


@pytest.mark.parametrize(
    "spell",
    [
        pytest.param(lambda raw, tmp: raw / "2026-11-20", id="the input itself"),
        pytest.param(lambda raw, tmp: raw, id="parent of the input"),
        pytest.param(lambda raw, tmp: tmp, id="grandparent of the input"),
        pytest.param(lambda raw, tmp: raw / "2026-11-20" / "out", id="inside the input"),
        pytest.param(lambda raw, tmp: raw / "2026-11-20" / ".." / "2026-11-20", id="dot-dots"),
        pytest.param(lambda raw, tmp: Path("raw"), id="relative parent"),
        pytest.param(lambda raw, tmp: tmp / "link", id="symlink to the input"),
        pytest.param(lambda raw, tmp: tmp / "link" / "sub", id="inside a symlink to the input"),
    ],
)
def test_an_output_overlapping_the_input_is_refused(
    raw: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    spell,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(raw / "2026-11-20")
    before = _snapshot(raw)
    code, errors = _curate(
        capsys, "--input", str(raw / "2026-11-20"), "--output", str(spell(raw, tmp_path))
    )
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("modelyard: error: refusing output") and "overlaps" in errors[0]
    assert _snapshot(raw) == before


def test_an_input_file_and_its_directory_are_protected(
    raw: Path, capsys: pytest.CaptureFixture
) -> None:
    part = raw / "2026-11-20" / "part-0.jsonl"
    before = _snapshot(raw)
    for output in (part, part.parent, raw):
        code, errors = _curate(capsys, "--input", str(part), "--output", str(output))
        assert code == 2 and len(errors) == 1 and "overlaps" in errors[0]
    assert _snapshot(raw) == before


def test_the_eval_reference_and_the_config_are_inputs_too(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    mine = tmp_path / "mine"
    reference = write_lines(mine / "suite.jsonl", [{"id": "r", "prompt": "p", "completion": "c"}])
    config = mine / "config.yaml"
    config.write_text("eval_fraction: 0.3\n")
    for extra in (["--eval-reference", str(reference)], ["--config", str(config)]):
        code, errors = _curate(
            capsys, "--input", str(raw / "2026-11-20"), "--output", str(mine), *extra
        )
        assert code == 2 and len(errors) == 1 and "overlaps" in errors[0]
    assert reference.is_file() and config.is_file()


def test_a_directory_this_tool_did_not_write_is_never_replaced(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    theirs = tmp_path / "theirs"
    (theirs / "deep").mkdir(parents=True)
    (theirs / "deep" / "thesis.tex").write_text("years of work\n")
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a directory\n")
    for output, why in ((theirs, "not a curation output"), (a_file, "not a directory")):
        code, errors = _curate(capsys, "--input", str(raw / "2026-11-20"), "--output", str(output))
        assert code == 2 and len(errors) == 1 and why in errors[0]
    assert (theirs / "deep" / "thesis.tex").read_text() == "years of work\n"
    assert a_file.read_text() == "not a directory\n"
    # The library refuses the same way, for every caller (the DAG task included).
    from modelyard.storage import UnsafeOutput

    with pytest.raises(UnsafeOutput):
        curate(raw / "2026-11-20", theirs, CurationSettings())


def test_a_new_an_empty_and_an_earlier_output_are_written_and_a_relative_path_works(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    for output in ("out", "empty", "out"):  # the last one replaces the first run's output
        code, errors = _curate(capsys, "--input", "raw/2026-11-20", "--output", output)
        assert (code, errors) == (0, [])
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["gx"]["success"] and (out / "gx" / "docs" / "index.html").is_file()
    assert json.loads((out / ".modelyard-curation").read_text())["version"] == manifest["version"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no scratch


def test_a_partition_file_linked_into_the_output_is_an_overlap(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A directory input is what its files are: one linking into the output overlaps it."""
    out = tmp_path / "out"
    assert _curate(capsys, "--input", str(raw / "2026-11-20"), "--output", str(out)) == (0, [])
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "part-0.jsonl").symlink_to(out / "train.jsonl")
    before = _snapshot(out)
    code, errors = _curate(capsys, "--input", str(linked), "--output", str(out))
    assert code == 2 and len(errors) == 1 and "overlaps the input" in errors[0], errors
    assert _snapshot(out) == before


def test_a_curation_output_holding_a_users_file_is_not_replaced(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = ("--input", str(raw / "2026-11-20"), "--output", str(out))
    assert _curate(capsys, *args) == (0, [])
    (out / "my-analysis.ipynb").write_text("hours of work\n")
    code, errors = _curate(capsys, *args)
    assert code == 2 and len(errors) == 1, errors
    assert "my-analysis.ipynb, which curation did not write" in errors[0]
    assert (out / "my-analysis.ipynb").read_text() == "hours of work\n"


def test_an_input_named_like_scratch_is_never_cleaned_up(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Stale scratch is `.<output>.<host>-<dead pid>.tmp|old`: a partition may be named so."""
    from modelyard.storage import _HOST

    for kind in ("tmp", "old"):
        source = tmp_path / f".out.{_HOST}-999999999.{kind}"
        write_partition(tmp_path / kind, date(2026, 11, 20), n=30)
        (tmp_path / kind / "2026-11-20").rename(source)
        before = _snapshot(source)
        out = tmp_path / "out"
        assert _curate(capsys, "--input", str(source), "--output", str(out)) == (0, [])
        assert _snapshot(source) == before


@pytest.mark.parametrize(
    ("output", "says"),
    [
        pytest.param(lambda tmp: tmp / "loop", "cannot resolve the output", id="symlink loop"),
        pytest.param(lambda tmp: tmp / "a-file.txt" / "sub", "Not a directory", id="under a file"),
        pytest.param(lambda tmp: tmp / ("y" * 250), "File name too long", id="name too long"),
    ],
)
def test_an_output_that_cannot_be_made_is_one_line(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture, output, says: str
) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "a-file.txt").write_text("kept\n")
    code, errors = _curate(
        capsys, "--input", str(raw / "2026-11-20"), "--output", str(output(tmp_path))
    )
    assert code == 2 and len(errors) == 1 and says in errors[0], errors
    assert (tmp_path / "a-file.txt").read_text() == "kept\n"


def test_an_empty_output_path_is_refused(raw: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["curate", "--input", str(raw / "2026-11-20"), "--output", ""])
    assert exit_.value.code == 2 and "an empty path" in capsys.readouterr().err
