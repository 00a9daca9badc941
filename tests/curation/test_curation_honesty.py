"""Checks that can fail: leaked_to_train is measured on the written train.jsonl, the gate
checks what the files hold (not what the curation code meant), and a broken install of the
evaluation stage is an error, not "no eval suite"."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from curation_planting import edited, long_record, read_jsonl, write_lines

from modelyard.curation.contamination import HeldOut
from modelyard.curation.pipeline import curate
from modelyard.evaluation.contamination import manifest_leaks
from modelyard.evaluation.gate import contamination_checks
from modelyard.settings import CurationSettings, Settings
from modelyard.tasks.curation import curate_partition
from modelyard.validation import GateFailed, run_gate


@pytest.fixture
def leaky(tmp_path: Path) -> tuple[Path, Path]:
    """A partition whose records 0-2 are near copies of eval-reference records."""
    reference = [long_record(seed, f"ref-{seed}") for seed in range(3)]
    suite = write_lines(tmp_path / "suite.jsonl", reference)  # the prompt/completion shape
    rows = [{**edited(r), "id": f"leak-{n}"} for n, r in enumerate(reference)]
    rows += [long_record(seed, f"r{seed}") for seed in range(100, 160)]
    write_lines(tmp_path / "raw" / "2026-11-20" / "part-0.jsonl", rows)
    return tmp_path / "raw" / "2026-11-20", suite


def test_leaked_to_train_counts_what_reached_train(leaky, tmp_path: Path) -> None:
    partition, suite = leaky
    settings = CurationSettings(eval_fraction=0.1)
    manifest = curate(partition, tmp_path / "out", settings, eval_reference=suite)
    contamination = manifest["contamination"]
    assert contamination["rejected_by_source"] == {"eval_reference": 3}
    assert contamination["leaked_to_train"] == 0
    assert run_gate(tmp_path / "out", settings)["success"]


def test_a_filter_that_misses_shows_in_the_count_and_both_gates_refuse(
    leaky, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partition, suite = leaky
    monkeypatch.setattr(HeldOut, "decide", lambda self, found: [None] * len(found))
    settings = CurationSettings(eval_fraction=0.1)
    manifest = curate(partition, tmp_path / "out", settings, eval_reference=suite)
    leaked = {r["id"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")} & {
        "leak-0",
        "leak-1",
        "leak-2",
    }
    assert manifest["contamination"]["leaked_to_train"] == len(leaked) > 0
    assert manifest["contamination"]["rejected"] == 0  # the filter let them all through

    with pytest.raises(GateFailed, match=r"\(leaked_to_train\): 1 unexpected"):
        run_gate(tmp_path / "out", settings)
    [check, _] = contamination_checks(manifest_leaks(manifest), [])
    assert check["name"] == "contamination.manifest" and check["passed"] is False


def _rewrite(path: Path, change) -> None:
    rows = read_jsonl(path)
    change(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize(
    ("change", "expectation"),
    [
        pytest.param(lambda rows: rows[0].pop("quality_score"), "(contract)", id="a field missing"),
        pytest.param(
            lambda rows: rows[0].update(quality_score=1.5), "(quality_score)", id="score > 1"
        ),
        pytest.param(
            lambda rows: rows[0]["messages"].insert(0, {"role": "boss", "content": "hi"}),
            "(roles_known)",
            id="an unknown role",
        ),
        pytest.param(
            lambda rows: rows[0].update(source={"file": "x", "line": 0}),
            "(source_line)",
            id="no line number",
        ),
        pytest.param(lambda rows: rows[0].update(id=" "), "(id_chars)", id="a blank id"),
    ],
)
def test_the_gate_checks_the_contract_the_old_suite_took_on_trust(
    tmp_path: Path, change, expectation: str
) -> None:
    write_lines(tmp_path / "in.jsonl", [long_record(seed, f"r{seed}") for seed in range(40)])
    settings = CurationSettings(eval_fraction=0.2)
    curate(tmp_path / "in.jsonl", tmp_path / "out", settings)
    _rewrite(tmp_path / "out" / "train.jsonl", change)
    with pytest.raises(GateFailed) as failure:
        run_gate(tmp_path / "out", settings)
    assert expectation in str(failure.value)


def test_each_record_is_judged_by_the_file_it_is_in(tmp_path: Path) -> None:
    """A training record moved into eval.jsonl still says split=train: the old suite read
    the side from that field and passed it."""
    write_lines(tmp_path / "in.jsonl", [long_record(seed, f"r{seed}") for seed in range(40)])
    settings = CurationSettings(eval_fraction=0.2)
    manifest = curate(tmp_path / "in.jsonl", tmp_path / "out", settings)
    train = read_jsonl(tmp_path / "out" / "train.jsonl")
    moved = train.pop()
    (tmp_path / "out" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    with (tmp_path / "out" / "eval.jsonl").open("a") as handle:
        handle.write(json.dumps(moved) + "\n")
    counts = manifest["counts"]  # keep the manifest consistent with the moved line
    counts["train"], counts["eval"] = counts["train"] - 1, counts["eval"] + 1
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GateFailed) as failure:
        run_gate(tmp_path / "out", settings)
    assert "(on_its_side): 1 unexpected" in str(failure.value)
    assert "counts_match_files" not in str(failure.value)


def test_an_evaluation_stage_that_cannot_be_imported_is_an_error(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_lines(Path(store.storage) / "raw" / "2026-11-20" / "part-0.jsonl", [long_record(1)])
    monkeypatch.setitem(sys.modules, "modelyard.evaluation.suite", None)  # a broken install
    with pytest.raises(ImportError):
        curate_partition("2026-11-20", store)
