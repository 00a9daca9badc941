"""Eval suites: content-addressed, frozen deliberately from every published held-out split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from evaluation.helpers import publish_dataset

from modelyard.cli import eval_suite as eval_suite_cli
from modelyard.evaluation.suite import current_suite, ensure_suite, freeze_suite


def test_no_published_dataset_is_a_clear_error(settings) -> None:
    assert current_suite(settings) is None
    with pytest.raises(ValueError, match="publish a dataset first"):
        ensure_suite(settings)


def test_initial_then_deliberate_freeze(settings, eval_sample) -> None:
    publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    first = ensure_suite(settings)
    assert first.version.startswith("suite-")
    assert [r["id"] for r in first.records()] == sorted(r["id"] for r in eval_sample["eval"])
    assert first.meta["reason"] == "initial suite" and first.meta["sources"] == ["ds-a"]
    assert ensure_suite(settings).version == first.version  # no silent change

    publish_dataset(settings.storage, "ds-b", [], eval_sample["later_eval"])
    assert current_suite(settings).version == first.version  # new data alone changes nothing
    with pytest.raises(ValueError, match="reason"):
        freeze_suite(settings, " ")
    second = freeze_suite(settings, "add ds-b held-out records")
    assert second.version != first.version and second.meta["parent"] == first.version
    assert second.meta["record_count"] == len(eval_sample["eval"]) + len(eval_sample["later_eval"])
    root = Path(settings.storage) / "eval-suites"
    assert (root / "CURRENT").read_text() == second.version
    first_meta = json.loads((root / first.version / "suite.json").read_text())
    assert first_meta["reason"] == "initial suite"
    assert freeze_suite(settings, "again").version == second.version  # same content


def test_cli_freeze(settings, eval_sample, capsys) -> None:
    publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    parser = argparse.ArgumentParser()
    eval_suite_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval-suite", "freeze", "--reason", "quarterly refresh"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "quarterly refresh"
    assert current_suite(settings).version == out["version"]


def test_a_publishers_scratch_is_not_a_published_version(settings, eval_sample) -> None:
    """A publish that died mid-copy may leave `.ds-....tmp` holding a manifest: never a source."""
    publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    publish_dataset(settings.storage, ".ds-b.host-1.tmp", [], eval_sample["later_eval"])
    suite = freeze_suite(settings, "after a failed publish")
    assert suite.meta["sources"] == ["ds-a"]
    assert suite.meta["record_count"] == len(eval_sample["eval"])


def test_a_held_out_record_without_id_is_one_line(settings, eval_sample) -> None:
    rows = [{k: v for k, v in r.items() if k != "id"} for r in eval_sample["eval"][:1]]
    publish_dataset(settings.storage, "ds-a", eval_sample["train"], rows)
    with pytest.raises(ValueError, match=r"ds-a/eval.jsonl line 1: a record without id"):
        freeze_suite(settings, "broken store")
