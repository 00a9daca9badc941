"""Cheap quality heuristics, applied before dedup so junk never becomes a representative.

Batched: the symbol share is counted by Arrow (RE2) and the repetition share comes from the
word n-gram hashes already computed for MinHash, so a batch costs a few array passes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.curation.minhash import Shingles
from modelyard.curation.records import Record
from modelyard.settings import CurationSettings

TRIVIAL_COMPLETIONS = frozenset({"", "ok", "okay", "yes", "no", "n/a", "none", "null", "-", "."})
_SYMBOL = r"[^\p{L}\p{N}\p{Z}\s_]"


def repetition_ratios(shingles: Shingles) -> np.ndarray:
    """Share of each record's word n-grams that repeat an earlier one of the same record
    (Gopher-style): natural text stays low whatever its length, 'buy now buy now' goes to 1.
    Records with fewer than 4 n-grams score 0."""
    counts = np.diff(shingles.starts)
    record = np.repeat(np.arange(len(counts), dtype=np.uint64), counts)
    # Record index in the high bits, 40 bits of hash below: one plain sort groups by record.
    keys = np.sort((record << np.uint64(40)) | (shingles.values >> np.uint64(24)))
    repeats = keys[1:][keys[1:] == keys[:-1]] >> np.uint64(40)
    repeated = np.bincount(repeats.astype(np.int64), minlength=len(counts))
    return np.where(counts >= 4, repeated / np.maximum(counts, 1), 0.0)


def symbol_ratios(texts: list[str]) -> np.ndarray:
    """Share of characters that are neither letters, digits nor spaces."""
    arr = pa.array(texts, pa.large_string())
    symbols = pc.count_substring_regex(arr, _SYMBOL).to_numpy(zero_copy_only=False)
    return symbols / np.maximum(pc.utf8_length(arr).to_numpy(zero_copy_only=False), 1)


def heuristic_issues(
    records: list[Record], texts: list[str], shingles: Shingles, settings: CurationSettings
) -> list[str | None]:
    """Why each record fails the heuristics, or None; the first failing check names it."""
    repetition = repetition_ratios(shingles).tolist()
    symbols = symbol_ratios(texts).tolist()
    issues: list[str | None] = []
    for record, rep, sym in zip(records, repetition, symbols, strict=True):
        prompt, completion = record.prompt, record.completion
        issue = None
        if len(prompt) + len(completion) > settings.max_record_chars:
            issue = f"longer than max_record_chars={settings.max_record_chars}"
        elif completion.lower() in TRIVIAL_COMPLETIONS:
            issue = "empty or trivial completion"
        elif len(prompt) < settings.min_prompt_chars:
            issue = f"prompt shorter than {settings.min_prompt_chars} chars"
        elif len(completion) < settings.min_completion_chars:
            issue = f"completion shorter than {settings.min_completion_chars} chars"
        elif rep > settings.max_repetition_ratio:
            issue = f"repetition ratio {rep:.2f} > {settings.max_repetition_ratio}"
        elif sym > settings.max_symbol_ratio:
            issue = f"symbol ratio {sym:.2f} > {settings.max_symbol_ratio}"
        issues.append(issue)
    return issues
