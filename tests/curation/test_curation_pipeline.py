"""The curation pipeline on planted defects: every line accounted for, each defect handled."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import date
from pathlib import Path

import pytest
from curation_planting import edited, long_record, read_jsonl, write_lines

from modelyard.curation.pipeline import REASONS, curate
from modelyard.sampledata import write_partition
from modelyard.settings import CurationSettings

PII_RECORD = {
    "id": "pii-1",
    "prompt": "Reach me at jane.doe@example.com or +1 415-555-0132 from host 192.168.10.7.",
    "completion": (
        "Card 4111 1111 1111 1111 (order 4111 1111 1111 1112 is not a card), key "
        "AKIAIOSFODNN7EXAMPLE, header Authorization: Bearer abcdefghijklmnop0123456789, "
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"
    ),
}
NON_UTF8 = b'{"prompt": "caf\xe9", "completion": "bad bytes"}'


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path, int]:
    """A partition with each defect planted, and an eval reference it leaks from."""
    raw = tmp_path / "raw"
    write_partition(raw, date(2026, 11, 20), n=60)
    original = long_record(1, "orig-1")
    leak = long_record(2, "leaked-ref")
    reference = write_lines(
        tmp_path / "suite" / "records.jsonl",
        [
            {
                "id": "ref-1",
                "messages": [
                    {"role": "user", "content": leak["prompt"]},
                    {"role": "assistant", "content": leak["completion"]},
                ],
                "split": "eval",
            },
        ],
    )
    extra = [
        original,
        original,  # exact duplicate
        {**edited(original), "id": "near-1"},  # near duplicate
        PII_RECORD,
        b"{not json",
        NON_UTF8,
        b"",
        {"prompt": "x" * 1_000_000, "completion": "one megabyte line"},
        {"prompt": "Buy now", "completion": "buy now " * 40},  # repetitive junk
        {"prompt": "Hi", "completion": "ok"},  # trivial completion
        {"question": "no accepted shape"},
        {"messages": [{"role": "user", "content": "no answer"}]},
        {**edited({"prompt": leak["prompt"], "completion": leak["completion"]}), "id": "leak-1"},
        {
            "instruction": "Tidy   this\u00a0text\u200b",
            "input": "cafe\u0301\x07",
            "output": "Done\r\n\r\n\r\nok",
        },
    ]
    partition = raw / "2026-11-20"
    write_lines(partition / "part-1.jsonl", extra)
    lines = sum(1 for _ in (partition / "part-0.jsonl").open("rb")) + len(extra)
    return partition, reference, lines


def _by_id(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(path)}


def test_every_line_lands_once_and_each_defect_is_handled(planted, tmp_path: Path) -> None:
    partition, reference, lines = planted
    out, quarantine = tmp_path / "out", tmp_path / "quarantine"
    manifest = curate(
        partition,
        out,
        CurationSettings(),
        partition="2026-11-20",
        eval_reference=reference,
        quarantine=quarantine,
    )

    train, evals, rejected = (read_jsonl(out / f"{n}.jsonl") for n in ("train", "eval", "rejected"))
    counts = manifest["counts"]
    assert counts["input"] == lines == len(train) + len(evals) + len(rejected)
    assert sum(counts["by_reason"].values()) == counts["rejected"] == len(rejected)
    assert set(counts["by_reason"]) <= set(REASONS)
    seen = {(r["source"]["file"], r["source"]["line"]) for r in train + evals + rejected}
    assert len(seen) == lines  # each input line exactly once, with its lineage

    rejected_at = {(r["source"]["file"], r["source"]["line"]): r for r in rejected}
    extra = "2026-11-20/part-1.jsonl"
    assert rejected_at[(extra, 2)]["reason"] == "duplicate"
    assert rejected_at[(extra, 2)]["duplicate_of"] == "orig-1"
    assert rejected_at[(extra, 3)]["reason"] == "near_duplicate"
    assert rejected_at[(extra, 3)]["duplicate_of"] == "orig-1"
    assert [rejected_at[(extra, n)]["reason"] for n in (5, 6, 7)] == ["malformed"] * 3
    raw_at = {
        (r["source"]["file"], r["source"]["line"]): r
        for r in read_jsonl(quarantine / manifest["version"] / "rejected.jsonl")
    }
    assert raw_at.keys() == rejected_at.keys()
    assert base64.b64decode(raw_at[(extra, 6)]["raw_b64"]) == NON_UTF8
    assert len(rejected_at[(extra, 8)]["text"]) > 1_000_000
    assert [rejected_at[(extra, n)]["reason"] for n in (8, 9, 10)] == ["quality"] * 3
    assert [rejected_at[(extra, n)]["reason"] for n in (11, 12)] == ["schema"] * 2
    # The sample generator's own planted exact duplicates are caught too.
    assert counts["by_reason"]["duplicate"] >= 2

    leak = next(r for r in rejected if r.get("id") == "leak-1")
    assert leak["reason"] == "contamination" and leak["duplicate_of"] == "ref-1"
    assert manifest["contamination"]["rejected_by_source"] == {"eval_reference": 1}
    assert manifest["contamination"]["leaked_to_train"] == 0
    assert "leak-1" not in {r["id"] for r in train}

    kept = _by_id(out / "train.jsonl") | _by_id(out / "eval.jsonl")
    scrubbed = kept["pii-1"]
    text = scrubbed["prompt"] + scrubbed["completion"]
    for placeholder in ("<EMAIL>", "<PHONE>", "<IP_ADDRESS>", "<CREDIT_CARD>", "<SECRET>"):
        assert placeholder in text
    assert "4111 1111 1111 1112" in text  # fails the Luhn check: not a card, kept
    assert manifest["pii"] == {
        "CREDIT_CARD": 1,
        "EMAIL": 1,
        "IP_ADDRESS": 1,
        "PHONE": 1,
        "SECRET": 3,
    }
    normalised = next(r for r in kept.values() if r["prompt"].startswith("Tidy"))
    assert (
        normalised["prompt"] == "Tidy this text\ncafé" and normalised["completion"] == "Done\n\nok"
    )
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in evals} == {"eval"}
    assert all(r["messages"][-1]["role"] == "assistant" for r in kept.values())


def test_same_input_and_config_give_the_same_version(planted, tmp_path: Path) -> None:
    partition, reference, _ = planted
    first = curate(
        partition,
        tmp_path / "a",
        CurationSettings(),
        partition="2026-11-20",
        eval_reference=reference,
    )
    second = curate(
        partition,
        tmp_path / "b",
        CurationSettings(),
        partition="2026-11-20",
        eval_reference=reference,
    )
    assert first["version"] == second["version"]
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (
        tmp_path / "b" / "train.jsonl"
    ).read_bytes()
    changed = curate(
        partition, tmp_path / "c", CurationSettings(near_dup_threshold=0.95), partition="2026-11-20"
    )
    assert changed["version"] != first["version"]


def test_reads_gzip_and_all_three_shapes(tmp_path: Path) -> None:
    partition = tmp_path / "2026-11-21"
    partition.mkdir()
    rows = [
        {"id": 7, "prompt": "p one", "completion": "c one"},
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "p two"},
                {"role": "assistant", "content": "c two"},
            ]
        },
        {"instruction": "p three", "input": "more", "output": "c three"},
    ]
    with gzip.open(partition / "part-0.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    curate(partition, tmp_path / "out", CurationSettings(eval_fraction=0.01))
    kept = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(
        tmp_path / "out" / "eval.jsonl"
    )
    by_prompt = {r["prompt"]: r for r in kept}
    assert set(by_prompt) == {"p one", "p two", "p three\nmore"}
    assert by_prompt["p one"]["id"] == "7"
    assert by_prompt["p two"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert by_prompt["p two"]["id"].startswith("c-")  # stable content id when none was given
    assert by_prompt["p three\nmore"]["source"] == {"file": "2026-11-21/part-0.jsonl.gz", "line": 3}


def test_a_record_keeps_its_side_when_other_records_change(tmp_path: Path) -> None:
    records = [long_record(seed, f"r{seed}") for seed in range(40)]
    write_lines(tmp_path / "one" / "part-0.jsonl", records)
    write_lines(
        tmp_path / "two" / "part-0.jsonl",
        records[20:] + [long_record(s, f"n{s}") for s in range(100, 130)],
    )
    sides = []
    for name in ("one", "two"):
        out = tmp_path / f"out-{name}"
        curate(tmp_path / name, out, CurationSettings(eval_fraction=0.3))
        sides.append(
            {r["id"]: r["split"] for n in ("train", "eval") for r in read_jsonl(out / f"{n}.jsonl")}
        )
    shared = set(sides[0]) & set(sides[1])
    assert len(shared) == 20
    assert {sides[0][i] for i in shared} == {"train", "eval"}  # both sides represented
    assert all(sides[0][i] == sides[1][i] for i in shared)


def test_worker_processes_give_the_same_dataset(tmp_path: Path) -> None:
    write_partition(tmp_path / "raw", date(2026, 11, 20), n=150)
    partition = tmp_path / "raw" / "2026-11-20"
    alone = curate(partition, tmp_path / "one", CurationSettings(batch_size=40))
    pooled = curate(partition, tmp_path / "two", CurationSettings(batch_size=40, workers=2))
    assert pooled["version"] == alone["version"] and pooled["counts"] == alone["counts"]
    for name in ("train.jsonl", "eval.jsonl", "rejected.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
