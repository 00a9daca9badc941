"""Independent leak check between a training file and the eval suite.

Curation reports its own contamination count in the dataset manifest; the gate does not take
that on trust and re-checks the training file against the suite it scores on. A suite record
leaks when its normalised words appear verbatim in train, or when at least ``coverage`` of its
words lie inside word n-grams that also occur in train: token coverage, as Llama 2's
contamination analysis measures it. Coverage rather than "any shared n-gram" because templated
tasks share long boilerplate n-grams between unrelated records; tokens rather than a share of
n-grams because one inserted word breaks n n-grams but leaves every word covered.

Both sides are NFKC-normalised and case-folded (full-width letters, ligatures and case are no
disguise), and the training side is read as the trainer reads it: every turn of ``messages``.
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


def _ngrams(words: list[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _covered(words: list[str], grams: set[tuple[str, ...]], n: int) -> float:
    """Share of ``words`` inside an n-gram that is in ``grams``."""
    covered = [False] * len(words)
    for i, gram in enumerate(_ngrams(words, n)):
        if gram in grams:
            covered[i : i + n] = [True] * n
    return sum(covered) / len(words) if words else 0.0


def overlap_leaks(
    train: Iterable[dict], suite: Iterable[dict], n: int, coverage: float
) -> list[str]:
    """Ids of suite records found in the training records (exactly or by token coverage)."""
    texts: set[tuple[str, ...]] = set()
    grams: set[tuple[str, ...]] = set()
    for record in train:
        words = _words(_trained_text(record))
        texts.add(tuple(words))
        grams.update(_ngrams(words, n))
    leaked = []
    for record in suite:
        words = _words(f"{record['prompt']} {record['completion']}")
        if tuple(words) in texts or (len(words) >= n and _covered(words, grams, n) >= coverage):
            leaked.append(record["id"])
    return leaked
