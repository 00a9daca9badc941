"""A published dataset holds no raw PII: rejected.jsonl shows scrubbed text and the reason;
raw lines go to a private quarantine outside the version, kept `quarantine_days`."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import pytest
from curation_planting import long_record, read_jsonl, write_lines

from modelyard import pii
from modelyard.settings import Settings
from modelyard.tasks.curation import curate_partition, publish_partition, validate_partition
from modelyard.validation import GateFailed

SENSITIVE = (
    "jane.doe@example.com",
    "jane\\u0040example",
    "415-555-0132",
    "AKIAIOSFODNN7EXAMPLE",
    "4111 1111 1111 1111",
    "203.0.113.54",
)
CLEAN = long_record(1, "clean")
WITH_MAIL = {**long_record(2, "mail"), "completion": "Write to jane.doe@example.com today."}
PII_LINES: list[dict | bytes] = [
    CLEAN,
    WITH_MAIL,
    WITH_MAIL,  # duplicate of a kept record
    {"prompt": "Reach jane.doe@example.com", "completion": "ok"},  # quality: trivial
    b'{"prompt": "call 415-555-0132 or jane\\u0040example.com", "completion": ',  # malformed
    b'{"prompt": "card 4111 1111 1111 1111 \xff", "completion": "bad bytes"}',  # not UTF-8
    {"question": "my key AKIAIOSFODNN7EXAMPLE"},  # schema
    {**long_record(3), "id": "mail", "completion": "from 203.0.113.54, reach 415-555-0132"},
]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _curate(store: Settings, ds: str, lines: list[dict | bytes]) -> dict:
    write_lines(Path(store.storage) / "raw" / ds / "part-0.jsonl", lines)
    return curate_partition(ds, store)


def test_published_rejections_are_scrubbed_and_the_raw_lines_quarantined(store: Settings) -> None:
    staged = _curate(store, "2026-11-20", PII_LINES)
    reasons = staged["counts"]["by_reason"]
    assert reasons == {"duplicate": 1, "duplicate_id": 1, "malformed": 2, "quality": 1, "schema": 1}
    assert validate_partition(staged["staging_dir"], store)["success"]
    published = Path(publish_partition(staged["staging_dir"], store)["path"])

    text = (published / "rejected.jsonl").read_text(encoding="utf-8")
    assert not [s for s in SENSITIVE if s in text]
    rows = read_jsonl(published / "rejected.jsonl")
    assert all(set(r) == {"reason", "detail", "duplicate_of", "source", "id", "text"} for r in rows)
    assert not any(pii.find_batch([s for r in rows for s in _strings(r)]))
    by_line = {r["source"]["line"]: r for r in rows}
    assert "<EMAIL>" in by_line[3]["text"] and "<PHONE>" in by_line[5]["text"]
    assert not list(published.rglob("*quarantine*"))

    quarantine = Path(store.storage) / "quarantine"
    held = quarantine / "2026-11-20" / staged["version"] / "rejected.jsonl"
    for path, mode in ((quarantine, 0o700), (held.parent.parent, 0o700), (held.parent, 0o700)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert stat.S_IMODE(held.stat().st_mode) == 0o600
    raw = {r["source"]["line"]: r for r in read_jsonl(held)}
    assert raw.keys() == by_line.keys()
    assert "jane.doe@example.com" in raw[3]["raw"]
    assert b"4111 1111 1111 1111" in base64.b64decode(raw[6]["raw_b64"])


def test_the_quarantine_is_pruned_after_its_retention_and_off_at_zero(store: Settings) -> None:
    first = _curate(store, "2026-11-20", PII_LINES)
    quarantine = Path(store.storage) / "quarantine"
    old = quarantine / "2026-11-20" / first["version"]
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    _curate(store, "2026-11-21", PII_LINES[:4])  # any run prunes what outlived 30 days
    assert not old.exists() and not (quarantine / "2026-11-20").exists()
    assert list((quarantine / "2026-11-21").iterdir())

    store.curation.quarantine_days = 0  # nothing raw is kept, and what was kept goes
    third = _curate(store, "2026-11-22", PII_LINES[:4])
    assert third["counts"]["rejected"] > 0
    assert not quarantine.exists() or not any(quarantine.iterdir())


def test_the_gate_refuses_rejections_that_carry_raw_text(store: Settings) -> None:
    staged = _curate(store, "2026-11-20", PII_LINES)
    staging = Path(staged["staging_dir"])
    rows = read_jsonl(staging / "rejected.jsonl")
    rows[0]["raw"] = "Reach jane.doe@example.com"  # as the old code published it
    rows[1]["text"] = "call 415-555-0132"
    (staging / "rejected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(GateFailed) as failure:
        validate_partition(str(staging), store)
    assert "(contract): 1 unexpected" in str(failure.value)
    assert "(pii_left): 2 unexpected" in str(failure.value)  # the raw one is read whole


def test_ids_and_cut_lines_publish_no_raw_pii(store: Settings) -> None:
    """Ids are published too (train, eval, rejected rows, dedup details): an id holding PII is
    replaced by one pseudonym wherever it appears. A line cut at ``max_line_bytes`` is scrubbed
    before the cut, so an address straddling it is not published as a fragment."""
    limit = 1024
    pad = "word " * ((limit - 40) // 5)
    cut_mail = {"prompt": f"{pad}write to alice.smith@example.com please", "completion": "z" * 2000}
    cut_phone = {"prompt": f"{pad[:-30]}  call +1 415 555 2671 now", "completion": "z" * 2000}
    lines = [
        {**long_record(1), "id": "bob.jones@example.com"},
        {**long_record(2), "id": "bob.jones@example.com"},  # duplicate id: its detail names it
        {"id": "+1 415 555 2671", "prompt": "short", "completion": "x"},  # quality
        *[long_record(seed, f"r{seed}") for seed in range(3, 40)],
        cut_mail,
        cut_phone,
    ]
    settings = store.model_copy(
        update={"curation": store.curation.model_copy(update={"max_line_bytes": limit})}
    )
    staged = _curate(settings, "2026-11-21", lines)
    assert staged["counts"]["by_reason"]["oversized"] == 2
    assert validate_partition(staged["staging_dir"], settings)["success"]
    published = Path(publish_partition(staged["staging_dir"], settings)["path"])
    files = ("train.jsonl", "eval.jsonl", "rejected.jsonl")
    text = "".join((published / name).read_text(encoding="utf-8") for name in files)
    for raw in ("bob.jones", "alice.smith", "example.com", "415 555", "2671"):
        assert raw not in text, raw
    ids = [r["id"] for name in files for r in read_jsonl(published / name)]
    pseudonyms = {i for i in ids if i and i.startswith("pii-")}
    assert len(pseudonyms) == 2  # bob's (twice: kept and duplicate) and the phone-number id
    rejected = {r["source"]["line"]: r for r in read_jsonl(published / "rejected.jsonl")}
    assert "<EMAIL>" in rejected[len(lines) - 1]["text"]
    assert len(rejected[len(lines) - 1]["text"]) <= limit
