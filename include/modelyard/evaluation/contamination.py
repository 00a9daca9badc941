"""Independent leak check between a training file and the eval suite.

Curation reports its own contamination count in the dataset manifest; the gate does not take
that on trust and re-checks the training file against the suite it scores on. A suite record
leaks when its normalised text appears verbatim in train, or when at least ``coverage`` of its
word n-grams occur in train (coverage rather than "any shared n-gram" because templated tasks
share long boilerplate n-grams between unrelated records).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


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


def _words(record: dict) -> list[str]:
    return re.findall(r"\w+", f"{record['prompt']} {record['completion']}".lower())


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlap_leaks(
    train: Iterable[dict], suite: Iterable[dict], n: int, coverage: float
) -> list[str]:
    """Ids of suite records found in the training records (exactly or by n-gram coverage)."""
    texts: set[tuple[str, ...]] = set()
    grams: set[tuple[str, ...]] = set()
    for record in train:
        words = _words(record)
        texts.add(tuple(words))
        grams |= _ngrams(words, n)
    leaked = []
    for record in suite:
        words = _words(record)
        own = _ngrams(words, n)
        if tuple(words) in texts or (own and len(own & grams) / len(own) >= coverage):
            leaked.append(record["id"])
    return leaked
