"""Compact lookup structures for dedup, and the per-version index files that make
"against every earlier published version" a read, not a re-curation.

A published version keeps, under ``index/``: ``ids.txt`` (one representative id a line),
``exact.u64`` (their exact-text hashes), ``minhash.u32`` (their signatures, row-major) and
``meta.json`` (the MinHash parameters, so signatures are only compared when comparable).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MINHASH_SCHEME = "crc32-ngram-u32-affine-v1"


class KeyIndex:
    """uint64 key -> int64 owner, the first owner of a key wins.

    Sorted runs merged LSM-style: adding a batch costs O(batch log n) and a key takes 16
    bytes, where a Python dict of millions of band keys would take hundreds of MB.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Owner of each key, -1 where absent."""
        out = np.full(len(keys), -1, dtype=np.int64)
        if not self._runs:
            return out
        order = np.argsort(keys)  # searchsorted is several times faster on sorted needles
        needles = keys[order]
        for run_keys, run_owners in self._runs:
            pos = np.minimum(np.searchsorted(run_keys, needles), len(run_keys) - 1)
            hit = run_keys[pos] == needles
            out[order[hit]] = run_owners[pos[hit]]
        return out

    def add(self, keys: np.ndarray, owners: np.ndarray) -> None:
        keys, first = np.unique(keys, return_index=True)
        fresh = self.lookup(keys) < 0
        if not fresh.any():
            return
        self._runs.append((keys[fresh], owners[first][fresh].astype(np.int32)))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            self._runs.append(_merge(self._runs.pop(-2), self._runs.pop()))


def _merge(
    older: tuple[np.ndarray, np.ndarray], newer: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted runs with disjoint keys, without an argsort's temporaries."""
    (k1, o1), (k2, o2) = older, newer
    slots = np.searchsorted(k1, k2) + np.arange(len(k2))
    rest = np.ones(len(k1) + len(k2), dtype=bool)
    rest[slots] = False
    keys, owners = np.empty(len(rest), dtype=k1.dtype), np.empty(len(rest), dtype=o1.dtype)
    keys[slots], keys[rest] = k2, k1
    owners[slots], owners[rest] = o2, o1
    return keys, owners


class SignatureFile:
    """Append-only signature rows on disk, read back by row span with ``pread``, so the
    signatures of a large partition stay out of RAM (a memory map would keep every page
    it touched resident)."""

    def __init__(self, path: Path, perm: int) -> None:
        self.path, self.perm, self.rows = path, perm, 0
        self._handle = path.open("w+b")

    def append(self, sigs: np.ndarray) -> None:
        self._handle.write(np.ascontiguousarray(sigs, dtype=np.uint32).tobytes())
        self.rows += len(sigs)

    def rows_at(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (ascending for a single read of their span)."""
        if not len(index):
            return np.zeros((0, self.perm), dtype=np.uint32)
        self._handle.flush()
        lo, hi = int(index.min()), int(index.max()) + 1
        row_bytes = 4 * self.perm
        span = os.pread(self._handle.fileno(), (hi - lo) * row_bytes, lo * row_bytes)
        return np.frombuffer(span, dtype=np.uint32).reshape(hi - lo, self.perm)[index - lo]

    def close(self) -> None:
        self._handle.close()


@dataclass
class VersionIndex:
    """The representatives of one published version."""

    ids: list[str]
    exact: np.ndarray  # uint64
    sigs: np.ndarray | None  # uint32 (n, perm); None when its MinHash parameters differ


def index_meta(perm: int, ngram: int, rows: int) -> dict:
    return {"scheme": MINHASH_SCHEME, "perm": perm, "ngram": ngram, "rows": rows}


def write_index_files(index_dir: Path, ids: list[str], exact: np.ndarray, meta: dict) -> None:
    """Complete an ``index/`` dir whose ``minhash.u32`` the SignatureFile already wrote."""
    (index_dir / "ids.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    exact.astype(np.uint64).tofile(index_dir / "exact.u64")
    (index_dir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def read_version_index(index_dir: Path, perm: int, ngram: int) -> VersionIndex:
    meta = json.loads((index_dir / "meta.json").read_text(encoding="utf-8"))
    ids = (index_dir / "ids.txt").read_text(encoding="utf-8").splitlines()
    exact = np.fromfile(index_dir / "exact.u64", dtype=np.uint64)
    comparable = meta == index_meta(perm, ngram, len(ids))
    sigs = (
        np.fromfile(index_dir / "minhash.u32", dtype=np.uint32).reshape(len(ids), perm)
        if comparable
        else None
    )
    return VersionIndex(ids, exact, sigs)
