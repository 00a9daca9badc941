"""Building blocks: PII scrubbing, normalisation, MinHash estimates, the embedding classifier."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from curation_planting import prose, read_jsonl, write_lines

from modelyard import pii
from modelyard.curation import minhash
from modelyard.records import normalize
from modelyard.settings import CurationSettings


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to a.b-c@mail.example.co.uk today", "EMAIL"),
        ("call (415) 555-0132 now", "PHONE"),
        ("call +44 20 7946 0958 now", "PHONE"),
        ("card 5555-5555-5555-4444 on file", "CREDIT_CARD"),
        ("from 203.0.113.54 yesterday", "IP_ADDRESS"),
        ("AKIAIOSFODNN7EXAMPLE", "SECRET"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SECRET"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "SECRET"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "SECRET"),
        ("HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz123456", "SECRET"),
        ("stripe sk_live_51Habcdefghijklmnopqrst", "SECRET"),
        ("key=AIzaSyA1234567890abcdefghijklmnopqrstuv", "SECRET"),
        ("glpat-abcdefghijklmnopqrst in CI", "SECRET"),
        ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='", "SECRET"),
        ("x-api-key: 0123456789abcdef", "SECRET"),
        ("SSN 123-45-6789 on the form", "US_SSN"),
        ("pay to DE89 3704 0044 0532 0130 00 by Friday", "IBAN"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC\n-----END OPENSSH PRIVATE KEY-----",
            "SECRET",
        ),
    ],
)
def test_each_pii_type_is_replaced_and_counted(text: str, kind: str) -> None:
    counts: Counter = Counter()
    [scrubbed] = pii.scrub_batch([text], counts)
    assert f"<{kind}>" in scrubbed and counts == Counter({kind: 1})
    assert pii.find_batch([text, scrubbed]) == [[kind], []]


def test_numbers_that_are_not_pii_survive() -> None:
    counts: Counter = Counter()
    text = (
        "order 4111 1111 1111 1112, version 1.2.3, year 2026, 999.1.1.1, 42 apples, "
        "released 2026-11-26, the Authorization header, model AB12"
    )
    assert pii.scrub_batch([text], counts) == [text] and not counts


def test_normalize_nfc_whitespace_and_controls() -> None:
    assert normalize("  a\u0301\t b\x00\u200b\r\n\r\n\r\n c  ") == "\u00e1 b\n\nc"


def test_minhash_estimates_jaccard_and_ignores_unrelated_text() -> None:
    base = prose(1, 120)
    words = base.split()
    near = " ".join(words[:60] + ["edited"] + words[61:])
    sigs = minhash.signatures(minhash.shingle_hashes([base, near, prose(2, 120)], 5), 128)
    estimated = minhash.similarity(sigs[0], sigs[1:])
    assert 0.85 <= estimated[0] <= 1.0  # true Jaccard 111/121 ~ 0.92
    assert estimated[1] < 0.1
    bands, rows = minhash.lsh_shape(0.8, 128)
    keys = minhash.band_keys(sigs, bands, rows)
    assert np.intersect1d(keys[0], keys[1]).size > 0 and np.intersect1d(keys[0], keys[2]).size == 0


def test_classifier_rejects_junk_and_keeps_good(tmp_path) -> None:
    from modelyard.curation.pipeline import curate

    good = [
        {
            "id": "g1",
            "prompt": "What is the capital of Italy?",
            "completion": "The capital of Italy is Rome.",
        },
        {
            "id": "g2",
            "prompt": "Explain what a queue is in one sentence.",
            "completion": "A queue is a first-in, first-out collection: items leave in order.",
        },
        {
            "id": "g3",
            "prompt": "Extract the person as JSON with keys name, job, city.\nHugo flies in Cairo.",
            "completion": '{"name": "Hugo", "job": "pilot", "city": "Cairo"}',
        },
    ]
    junk = [
        {"id": "j1", "prompt": "zxcv", "completion": "qwop asdl zzkx ppq"},
        {
            "id": "j2",
            "prompt": "deal",
            "completion": "CHEAP WATCHES CLICK HERE FREE SHIPPING BUY TODAY",
        },
    ]
    write_lines(tmp_path / "in" / "part-0.jsonl", good + junk)
    settings = CurationSettings(quality_classifier=True, quality_threshold=0.5, eval_fraction=0.01)
    manifest = curate(tmp_path / "in", tmp_path / "out", settings)
    kept = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(
        tmp_path / "out" / "eval.jsonl"
    )
    rejected = read_jsonl(tmp_path / "out" / "rejected.jsonl")
    assert {r["id"] for r in kept} == {"g1", "g2", "g3"}
    assert all(r["quality_score"] >= 0.5 for r in kept)
    assert {r["id"] for r in rejected} == {"j1", "j2"}
    assert all(r["reason"] == "quality" and "classifier" in r["detail"] for r in rejected)
    assert sum(manifest["quality"]["histogram"].values()) == 5


def test_minhash_estimates_have_the_spread_of_ideal_minhash() -> None:
    """The 32-bit affine permutations behave like independent ones: estimates of pairs at a
    known Jaccard are unbiased with the binomial standard deviation sqrt(J(1-J)/perm)."""
    texts = []
    for seed in range(150):
        words = prose(seed, 90).split()
        texts += [" ".join(words), " ".join(words[:45] + ["edited"] + words[46:])]
    sigs = minhash.signatures(minhash.shingle_hashes(texts, 5), 128)
    estimates = (sigs[0::2] == sigs[1::2]).mean(axis=1)
    true = 81 / 91  # 86 five-grams each, 5 changed
    assert abs(estimates.mean() - true) < 0.01
    assert 0.6 < estimates.std() / np.sqrt(true * (1 - true) / 128) < 1.4


def test_key_index_matches_a_dict_across_spilled_runs(tmp_path, monkeypatch) -> None:
    """First owner wins, hits and misses alike, whether a run sits in RAM or was spilled to
    a memory-mapped file (spilling forced early)."""
    from modelyard.curation import index

    monkeypatch.setattr(index, "_SPILL", 500)
    keys_index, reference = index.KeyIndex(tmp_path / "spill"), {}
    rng = np.random.default_rng(7)
    previous = np.zeros(0, dtype=np.uint64)
    for batch in range(12):
        keys = rng.integers(0, 2**64 - 1, size=300, dtype=np.uint64)
        keys[:40] = keys[40:80]  # repeated within the batch
        keys[80 : 80 + min(60, len(previous))] = previous[:60]  # seen in an earlier batch
        owners = np.arange(batch * 300, (batch + 1) * 300)
        expected = [reference.get(int(k), -1) for k in keys]
        assert keys_index.lookup(keys).tolist() == expected
        keys_index.add(keys, owners)
        for key, owner in zip(keys.tolist(), owners.tolist(), strict=True):
            reference.setdefault(key, owner)
        previous = keys
    assert len(list((tmp_path / "spill").glob("*.keys"))) >= 2
    assert len(keys_index) == len(reference)


def test_worker_jobs_pause_the_collector_and_restore_it() -> None:
    """The cyclic collector is off while a job runs, and as it was afterwards, after an
    error too (a collector left off would let cycles pile up for the rest of the run)."""
    import gc

    from modelyard.workers import collector_paused

    def job(value: int) -> tuple[int, bool]:
        return value, gc.isenabled()

    assert gc.isenabled()
    assert collector_paused(job, 3) == (3, False)
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError):
        collector_paused(lambda: 1 / 0)
    assert gc.isenabled()
    gc.disable()
    try:
        assert collector_paused(job, 1) == (1, False)
        assert not gc.isenabled()  # off before, so left off
    finally:
        gc.enable()
