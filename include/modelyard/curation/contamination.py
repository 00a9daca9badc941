"""Training records must not leak the held-out side or the pinned eval suite.

A training record is contaminated when at least ``contamination_min_overlap`` of its word
``contamination_ngram``-grams occur in a held-out record (a share, as PaLM does, because
templated prompts make single shared 13-grams common), or when it is a near-duplicate
(MinHash Jaccard >= ``near_dup_threshold``) of one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from modelyard.curation import minhash
from modelyard.curation.index import KeyIndex
from modelyard.settings import CurationSettings


@dataclass(frozen=True)
class Leak:
    of: str
    kind: str  # "held_out" | "eval_reference"
    detail: str


@dataclass
class HeldOut:
    settings: CurationSettings
    ids: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    sizes: Counter = field(default_factory=Counter)
    found: Counter = field(default_factory=Counter)
    examples: list[dict] = field(default_factory=list)
    _ngrams: KeyIndex = field(default_factory=KeyIndex)
    _bands: KeyIndex = field(default_factory=KeyIndex)
    _sigs: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shape = minhash.lsh_shape(self.settings.near_dup_threshold, self.settings.minhash_perm)

    def add(self, ids: list[str], grams: minhash.Shingles, sigs: np.ndarray, kind: str) -> None:
        """Held-out records: their ``contamination_ngram``-gram hashes and signatures."""
        owners = np.arange(len(self.ids), len(self.ids) + len(ids), dtype=np.int64)
        self.ids.extend(ids)
        self.kinds.extend([kind] * len(ids))
        self.sizes[kind] += len(ids)
        self._ngrams.add(grams.values, np.repeat(owners, np.diff(grams.starts)))
        keys = minhash.band_keys(sigs, *self.shape)
        self._bands.add(keys.ravel(), np.repeat(owners, self.shape[0]))
        self._sigs.append(sigs)

    def check(self, grams: minhash.Shingles, sigs: np.ndarray) -> list[Leak | None]:
        """Leak per training record (None = clean); counted into the report."""
        if not self.ids:
            return [None] * len(sigs)
        if len(self._sigs) > 1:
            self._sigs = [np.concatenate(self._sigs)]
        held_sigs = self._sigs[0]
        owners = self._ngrams.lookup(grams.values)
        hit = owners >= 0
        per_record = np.diff(grams.starts)
        shares = np.add.reduceat(hit, grams.starts[:-1]) / np.maximum(per_record, 1)
        shares[per_record == 0] = 0.0
        band_owner = self._bands.lookup(minhash.band_keys(sigs, *self.shape).ravel())
        band_owner = band_owner.reshape(len(sigs), -1)
        suspects = np.flatnonzero(
            (shares >= self.settings.contamination_min_overlap) | (band_owner >= 0).any(axis=1)
        )
        leaks: list[Leak | None] = [None] * len(sigs)
        n = self.settings.contamination_ngram
        for i in suspects.tolist():
            if shares[i] >= self.settings.contamination_min_overlap:
                mine = owners[grams.starts[i] : grams.starts[i + 1]]
                leaks[i] = self._leak(int(mine[mine >= 0][0]), f"{shares[i]:.0%} of its {n}-grams")
                continue
            for cand in sorted({int(o) for o in band_owner[i] if o >= 0}):
                sim = float(minhash.similarity(sigs[i], held_sigs[cand][None])[0])
                if sim >= self.settings.near_dup_threshold:
                    leaks[i] = self._leak(cand, f"near-duplicate (Jaccard ~{sim:.2f})")
                    break
        return leaks

    def _leak(self, owner: int, what: str) -> Leak:
        kind = self.kinds[owner]
        self.found[kind] += 1
        if len(self.examples) < 20:
            self.examples.append({"of": self.ids[owner], "kind": kind, "match": what})
        return Leak(self.ids[owner], kind, f"{what} match {kind} record {self.ids[owner]}")

    def report(self, checked: int) -> dict:
        s = self.settings
        return {
            "ngram": s.contamination_ngram,
            "min_overlap": s.contamination_min_overlap,
            "near_dup_threshold": s.near_dup_threshold,
            "checked_train_records": checked,
            "held_out_records": dict(self.sizes),
            "rejected": sum(self.found.values()),
            "rejected_by_source": dict(self.found),
            "examples": self.examples,
        }
