"""Independent leak check between a training file and the eval suite.

Curation reports its own contamination count in the dataset manifest; the gate does not take
that on trust and re-checks the training file against the suite it scores on. A suite record
leaks when its normalised words appear verbatim in train, or when at least ``coverage`` of its
word n-grams occur in train (coverage rather than "any shared n-gram" because templated tasks
share long boilerplate n-grams between unrelated records). Both sides are NFKC-normalised and
case-folded (full-width letters, ligatures and case are no disguise), and the training side is
read as the trainer reads it: every turn of ``messages``, the system turn included.

What n-grams cannot tell apart: on a templated task, a suite record with one word added and a
different example that changes one word share the same n-grams; ``gate.leak_coverage`` sets
where that line falls (measured on the sample task: distinct examples share at most 75% of
their 8-grams with 2,500 training records).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from modelyard.records import text_of


def manifest_leaks(manifest: dict) -> int | None:
    """The manifest's count of held-out records reaching train, or None when it cannot tell.

    An explicit ``leaked_to_train`` wins. Curation rejects every leak it detects and counts them
    under ``rejected``, so a section with that count and no explicit one means none reached train.
    """
    section = manifest.get("contamination")
    if not isinstance(section, dict):
        return None
    if isinstance(section.get("leaked_to_train"), int):
        return section["leaked_to_train"]
    return 0 if isinstance(section.get("rejected"), int) else None


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())


def _trained_text(record: dict) -> str:
    """All the text the trainer sees (every turn, system included) of a curated record."""
    if isinstance(record.get("messages"), list):
        return text_of(record["messages"])
    return f"{record['prompt']} {record['completion']}"


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlap_leaks(
    train: Iterable[dict], suite: Iterable[dict], n: int, coverage: float
) -> list[str]:
    """Ids of suite records found in the training records (exactly or by n-gram coverage)."""
    texts: set[tuple[str, ...]] = set()
    grams: set[tuple[str, ...]] = set()
    for record in train:
        words = _words(_trained_text(record))
        texts.add(tuple(words))
        grams |= _ngrams(words, n)
    leaked = []
    for record in suite:
        words = _words(f"{record['prompt']} {record['completion']}")
        own = _ngrams(words, n)
        if tuple(words) in texts or (own and len(own & grams) / len(own) >= coverage):
            leaked.append(record["id"])
    return leaked
