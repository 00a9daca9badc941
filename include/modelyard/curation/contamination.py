"""Training records must not leak the held-out side or the pinned eval suite.

A training record is contaminated when at least ``contamination_min_overlap`` of its word
``contamination_ngram``-grams occur in a held-out record (a share, as PaLM does, because
templated prompts make single shared 13-grams common), or when it is a near-duplicate
(MinHash Jaccard >= ``near_dup_threshold``) of one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelyard.curation import minhash
from modelyard.curation.index import IdLog, KeyIndex, SignatureFile
from modelyard.settings import CurationSettings


@dataclass(frozen=True)
class Leak:
    of: str
    kind: str  # "held_out" | "eval_reference"
    detail: str


class HeldOut:
    """Held-out records, indexed by n-gram and LSH band (``KeyIndex``); their ids and
    signatures wait on disk under ``scratch`` for the few suspects."""

    KINDS = ("held_out", "eval_reference")

    def __init__(self, settings: CurationSettings, scratch: Path) -> None:
        scratch.mkdir(parents=True)
        self.settings = settings
        self.shape = minhash.lsh_shape(settings.near_dup_threshold, settings.minhash_perm)
        self.ids = IdLog(scratch / "ids.txt")
        self.kinds = np.zeros(0, dtype=np.int8)  # index into KINDS
        self.sizes: Counter = Counter()
        self.found: Counter = Counter()
        self.examples: list[dict] = []
        self._ngrams, self._bands = KeyIndex(scratch / "ngrams"), KeyIndex(scratch / "bands")
        self._sigs = SignatureFile(scratch / "minhash.u32", settings.minhash_perm)

    def add(self, ids: list[str], grams: minhash.Shingles, sigs: np.ndarray, kind: str) -> None:
        """Held-out records: their ``contamination_ngram``-gram hashes and signatures."""
        owners = np.arange(len(self.ids), len(self.ids) + len(ids), dtype=np.int64)
        self.ids.extend(ids)
        self.kinds = np.concatenate(
            [self.kinds, np.full(len(ids), self.KINDS.index(kind), np.int8)]
        )
        self.sizes[kind] += len(ids)
        self._ngrams.add(grams.values, np.repeat(owners, np.diff(grams.starts)))
        keys = minhash.band_keys(sigs, *self.shape)
        self._bands.add(keys.ravel(), np.repeat(owners, self.shape[0]))
        self._sigs.append(sigs)

    def matches(self, grams: minhash.Shingles, sigs: np.ndarray) -> list[tuple[int, str] | None]:
        """(held-out owner, how) per training record that overlaps the held-out side, else
        None: the contamination criteria, without deciding or counting anything."""
        if not len(self.ids):
            return [None] * len(sigs)
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
        found: list[tuple[int, str] | None] = [None] * len(sigs)
        n = self.settings.contamination_ngram
        for i in suspects.tolist():
            if shares[i] >= self.settings.contamination_min_overlap:
                mine = owners[grams.starts[i] : grams.starts[i + 1]]
                found[i] = (int(mine[mine >= 0][0]), f"{shares[i]:.0%} of its {n}-grams")
                continue
            for cand in sorted({int(o) for o in band_owner[i] if o >= 0}):
                held = self._sigs.rows_at(np.array([cand]))
                sim = float(minhash.similarity(sigs[i], held)[0])
                if sim >= self.settings.near_dup_threshold:
                    found[i] = (cand, f"near-duplicate (Jaccard ~{sim:.2f})")
                    break
        return found

    def decide(self, found: list[tuple[int, str] | None]) -> list[Leak | None]:
        """The filter's decision on ``matches``: a Leak per training record to reject (None =
        keep), counted into the report."""
        return [None if m is None else self._leak(*m) for m in found]

    def _leak(self, owner: int, what: str) -> Leak:
        kind, of = self.KINDS[self.kinds[owner]], self.ids[owner]
        self.found[kind] += 1
        if len(self.examples) < 20:
            self.examples.append({"of": of, "kind": kind, "match": what})
        return Leak(of, kind, f"{what} match {kind} record {of}")

    def close(self) -> None:
        self.ids.close()
        self._sigs.close()

    def report(self, checked: int, leaked_to_train: int) -> dict:
        s = self.settings
        return {
            "ngram": s.contamination_ngram,
            "min_overlap": s.contamination_min_overlap,
            "near_dup_threshold": s.near_dup_threshold,
            "checked_train_records": checked,
            "held_out_records": dict(self.sizes),
            "rejected": sum(self.found.values()),
            "rejected_by_source": dict(self.found),
            # Measured on train.jsonl once written, apart from the filter's decisions
            # (``Curation._leaked_to_train``): the GX gate and the evaluation gate require 0.
            "leaked_to_train": leaked_to_train,
            "examples": self.examples,
        }
