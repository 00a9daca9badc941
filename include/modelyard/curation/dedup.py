"""Exact and near-duplicate judgement, streaming, against this run and earlier versions.

Greedy clustering: records are judged in input order; the first record of a cluster is its
representative and every later member names it (``duplicate_of``). Earlier versions'
representatives are loaded first, so a record seen last week is a duplicate today.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelyard.curation import minhash
from modelyard.curation.index import IdLog, KeyIndex, SignatureFile, VersionIndex


@dataclass(frozen=True)
class Verdict:
    reason: str  # "duplicate" | "near_duplicate"
    of: str
    detail: str


class Deduplicator:
    """Owners are ordinals: earlier versions' representatives first, then this run's."""

    def __init__(
        self,
        index_dir: Path,
        perm: int,
        threshold: float,
        history: list[VersionIndex],
        scratch: Path,
    ) -> None:
        """This run's representatives go to ``index_dir`` (``ids.txt``, ``minhash.u32``);
        large lookup runs spill to ``scratch``."""
        self.threshold = threshold
        self.shape = self.bands, self.rows = minhash.lsh_shape(threshold, perm)
        self.exact, self.band_index = KeyIndex(scratch / "exact"), KeyIndex(scratch / "bands")
        self.history_ids = [i for version in history for i in version.ids]
        self.run_ids = IdLog(index_dir / "ids.txt")
        self.run_exact: list[np.ndarray] = []
        comparable = [v.sigs for v in history if v.sigs is not None]
        self._history_sigs = np.concatenate(comparable) if comparable else None
        has_sigs = [np.full(len(v.ids), v.sigs is not None) for v in history]
        self._history_row = np.cumsum(np.concatenate(has_sigs or [np.zeros(0, bool)])) - 1
        self.history_size = 0
        for version in history:
            keys = None if version.sigs is None else minhash.band_keys(version.sigs, *self.shape)
            self._add(version.exact, keys, len(version.ids))
            self.history_size += len(version.ids)
        self.signatures = SignatureFile(index_dir / "minhash.u32", perm)

    def __len__(self) -> int:
        return self.history_size + len(self.run_ids)

    def _add(
        self,
        exact: np.ndarray,
        keys: np.ndarray | None,
        count: int,
        found: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Index ``count`` representatives by exact hash and band ``keys`` (None: not
        comparable); ``found`` is the lookup of both just made, if any."""
        owners = np.arange(len(self), len(self) + count, dtype=np.int64)
        self.exact.add(exact, owners, None if found is None else found[0])
        if keys is not None and len(keys):
            bands = None if found is None else found[1].ravel()
            self.band_index.add(keys.ravel(), np.repeat(owners, self.bands), bands)

    def _sig(self, owner: int) -> np.ndarray:
        if owner < self.history_size:
            return self._history_sigs[self._history_row[owner]]
        return self.signatures.rows_at(np.array([owner - self.history_size]))[0]

    def judge(self, ids: list[str], exact: np.ndarray, sigs: np.ndarray) -> list[Verdict | None]:
        """Verdict per record (None = representative, kept and indexed).

        Only records that share an exact hash or a band key with an indexed record or with
        another record of the batch can be duplicates; the Python loop visits just those.
        """
        keys = minhash.band_keys(sigs, self.bands, self.rows)
        exact_owner = self.exact.lookup(exact)
        band_owner = self.band_index.lookup(keys.ravel()).reshape(keys.shape)
        shared_key = _repeated(keys.ravel()).reshape(keys.shape)
        shared_exact = _repeated(exact)
        involved = (
            (exact_owner >= 0)
            | shared_exact
            | (band_owner >= 0).any(axis=1)
            | shared_key.any(axis=1)
        )
        local_exact: dict[int, int] = {}
        local_band: dict[int, int] = {}
        local_sig: dict[int, np.ndarray] = {}
        local_ids: dict[int, str] = {}
        verdicts: list[Verdict | None] = [None] * len(ids)
        removed = 0
        for i in np.flatnonzero(involved).tolist():
            h = int(exact[i])
            owner = int(exact_owner[i]) if exact_owner[i] >= 0 else local_exact.get(h, -1)
            if owner >= 0:
                verdicts[i] = Verdict(
                    "duplicate", self._id(owner, local_ids), "same normalised text"
                )
                removed += 1
                continue
            row = keys[i][shared_key[i]].tolist()
            candidates = {o for o in band_owner[i].tolist() if o >= 0}
            candidates.update(local_band[k] for k in row if k in local_band)
            best, best_sim = -1, -1.0
            for cand in sorted(candidates):
                other = local_sig[cand] if cand in local_sig else self._sig(cand)
                sim = float(minhash.similarity(sigs[i], other[None])[0])
                if sim >= self.threshold and sim > best_sim:
                    best, best_sim = cand, sim
            if best >= 0:
                detail = f"estimated n-gram Jaccard {best_sim:.2f}"
                verdicts[i] = Verdict("near_duplicate", self._id(best, local_ids), detail)
                removed += 1
                continue
            owner = len(self) + i - removed  # its rank among the batch's representatives
            local_exact[h] = owner
            local_sig[owner] = sigs[i]
            local_ids[owner] = ids[i]
            for k in row:
                local_band.setdefault(k, owner)
        kept = np.array([i for i, v in enumerate(verdicts) if v is None], dtype=np.int64)
        self._add(exact[kept], keys[kept], len(kept), (exact_owner[kept], band_owner[kept]))
        self.run_ids.extend([ids[i] for i in kept])
        self.signatures.append(sigs[kept])
        self.run_exact.append(exact[kept])
        return verdicts

    def _id(self, owner: int, local_ids: dict[int, str]) -> str:
        """Id of an indexed owner, or of a representative of the batch being judged."""
        if owner < self.history_size:
            return self.history_ids[owner]
        return self.run_ids[owner - self.history_size] if owner < len(self) else local_ids[owner]


def _repeated(values: np.ndarray) -> np.ndarray:
    """Whether each value occurs more than once in ``values``."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()] > 1
