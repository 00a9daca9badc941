"""Cheap quality heuristics, applied before dedup so junk never becomes a representative.

Batched: the symbol share is counted by Arrow (RE2) and the repetition share comes from the
word n-gram hashes already computed for MinHash, so a batch costs a few array passes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.curation.minhash import Shingles
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
    prompts: list[str],
    completions: list[str],
    texts: list[str],
    shingles: Shingles,
    settings: CurationSettings,
) -> list[str | None]:
    """Why each record fails the heuristics, or None; the first failing check names it."""
    prompt_len = np.fromiter(map(len, prompts), dtype=np.int64, count=len(prompts))
    completion_len = np.fromiter(map(len, completions), dtype=np.int64, count=len(completions))
    longest_trivial = max(map(len, TRIVIAL_COMPLETIONS))
    trivial = np.array(
        [
            n <= longest_trivial and c.lower() in TRIVIAL_COMPLETIONS
            for c, n in zip(completions, completion_len.tolist(), strict=True)
        ],
        dtype=bool,
    )
    repetition = repetition_ratios(shingles)
    symbols = symbol_ratios(texts)
    failing = (
        (prompt_len + completion_len > settings.max_record_chars)
        | trivial
        | (prompt_len < settings.min_prompt_chars)
        | (completion_len < settings.min_completion_chars)
        | (repetition > settings.max_repetition_ratio)
        | (symbols > settings.max_symbol_ratio)
    )
    issues: list[str | None] = [None] * len(prompts)
    for i in np.flatnonzero(failing).tolist():
        if prompt_len[i] + completion_len[i] > settings.max_record_chars:
            issues[i] = f"longer than max_record_chars={settings.max_record_chars}"
        elif trivial[i]:
            issues[i] = "empty or trivial completion"
        elif prompt_len[i] < settings.min_prompt_chars:
            issues[i] = f"prompt shorter than {settings.min_prompt_chars} chars"
        elif completion_len[i] < settings.min_completion_chars:
            issues[i] = f"completion shorter than {settings.min_completion_chars} chars"
        elif repetition[i] > settings.max_repetition_ratio:
            issues[i] = f"repetition ratio {repetition[i]:.2f} > {settings.max_repetition_ratio}"
        else:
            issues[i] = f"symbol ratio {symbols[i]:.2f} > {settings.max_symbol_ratio}"
    return issues
