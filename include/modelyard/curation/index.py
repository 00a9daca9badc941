"""Compact lookup structures for dedup, and the per-version index files that make
"against every earlier published version" a read, not a re-curation.

A published version keeps, under ``index/``: ``ids.txt`` (one representative id a line),
``exact.u64`` (their exact-text hashes), ``minhash.u32`` (their signatures, row-major) and
``meta.json`` (the MinHash parameters, so signatures are only compared when comparable).
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MINHASH_SCHEME = "crc32-ngram-u32-affine-v1"
# Keys of a run that moves to a memory-mapped file (6 MB): runs below stay in RAM and merge.
_SPILL = 1 << 19
_BLOCK = 64  # keys of a spilled run under one in-RAM fence key


class KeyIndex:
    """uint64 key -> int64 owner, the first owner of a key wins.

    An LSM tree: sorted runs merged in RAM (adding a batch costs O(batch log n)) until one
    reaches ``_SPILL`` keys and moves to a memory-mapped file under ``spill``. Most lookups
    miss (new text shares no band or n-gram), so a Bloom filter (one to two bytes a key,
    rebuilt as the index doubles) answers those without touching a run; the few others read
    one block of each spilled run. RAM per key: the filter's bytes, plus 12 bytes only for
    keys not yet spilled. Keys must be well-mixed hashes.
    """

    def __init__(self, spill: Path | None = None) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._spilled: list[_SpilledRun] = []
        self._spill = spill
        self._size = 0
        self._bits = np.zeros(1, dtype=np.uint8)
        self._shift = np.uint64(64)  # key >> shift = its filter byte

    def __len__(self) -> int:
        return self._size

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Owner of each key, -1 where absent."""
        out = np.full(len(keys), -1, dtype=np.int64)
        if not self._size:
            return out
        maybe = np.flatnonzero(self._may_hold(keys))
        order = maybe[np.argsort(keys[maybe])]  # searchsorted is faster on sorted needles
        needles = keys[order]
        for run_keys, run_owners in self._runs:
            pos = np.minimum(np.searchsorted(run_keys, needles), len(run_keys) - 1)
            hit = run_keys[pos] == needles
            out[order[hit]] = run_owners[pos[hit]]
        for run in self._spilled:
            hit, owners = run.find(needles)
            out[order[hit]] = owners
        return out

    def add(self, keys: np.ndarray, owners: np.ndarray, found: np.ndarray | None = None) -> None:
        """Index ``keys``; ``found``, when given, is ``lookup(keys)`` made since the last add
        (a caller that just looked them up saves the second lookup)."""
        if not len(keys):
            return
        keys, first = _first_of_each(keys)
        fresh = (self.lookup(keys) if found is None else found[first]) < 0
        if not fresh.any():
            return
        self._runs.append((keys[fresh], owners[first][fresh].astype(np.int32)))
        self._size += int(fresh.sum())
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            self._runs.append(_merge(self._runs.pop(-2), self._runs.pop()))
        if self._spill is not None and len(self._runs[0][0]) >= _SPILL:
            path = self._spill / f"run-{len(self._spilled)}"
            self._spilled.append(_SpilledRun(path, *self._runs.pop(0)))
        if self._size > len(self._bits):
            size = 1 << (self._size - 1).bit_length()  # bytes: one to two a key
            self._bits = np.zeros(size, dtype=np.uint8)
            self._shift = np.uint64(64 - size.bit_length() + 1)
            for run_keys in [k for k, _ in self._runs] + [r.keys for r in self._spilled]:
                self._mark(run_keys)
            for run in self._spilled:
                run.release()
        else:
            self._mark(keys[fresh])

    def _mark(self, sorted_keys: np.ndarray) -> None:
        byte = sorted_keys >> self._shift
        starts = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        self._bits[byte[starts]] |= np.bitwise_or.reduceat(_probe_bits(sorted_keys), starts)

    def _may_hold(self, keys: np.ndarray) -> np.ndarray:
        bits = _probe_bits(keys)
        return self._bits[keys >> self._shift] & bits == bits


def _first_of_each(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_index=True)``: the sorted distinct keys and the position of
    each one's first occurrence. Its stable argsort was a measurable share of judging a
    batch; the default (SIMD) argsort plus a minimum per group of equal keys is ~3x faster."""
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return ordered[starts], np.minimum.reduceat(order, starts)


def _probe_bits(keys: np.ndarray) -> np.ndarray:
    """Two bits of a filter byte (a one-byte blocked Bloom filter): the byte comes from a
    key's top bits, the bits from its lowest six, a third of the false positives of one."""
    low = (keys & np.uint64(63)).astype(np.uint8)
    return np.left_shift(1, low & 7, dtype=np.uint8) | np.left_shift(1, low >> 3, dtype=np.uint8)


class _SpilledRun:
    """A sorted run in two memory-mapped files; RAM holds one fence key a ``_BLOCK`` keys.
    Pages read by a lookup are handed back afterwards (``MADV_DONTNEED``: they stay in the
    page cache, not in this process)."""

    def __init__(self, path: Path, keys: np.ndarray, owners: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fence = keys[::_BLOCK].copy()
        self._maps = []
        arrays = []
        for suffix, array in ((".keys", keys), (".owners", owners)):
            array.tofile(path.with_suffix(suffix))
            with path.with_suffix(suffix).open("rb") as handle:
                self._maps.append(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
            arrays.append(np.frombuffer(self._maps[-1], dtype=array.dtype))
        self.keys, self.owners = arrays

    def find(self, needles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which sorted ``needles`` the run holds, and their owners: the fence names each
        needle's block, then a binary search inside the blocks, all needles at once."""
        lo = np.maximum(np.searchsorted(self.fence, needles, side="right") - 1, 0) * _BLOCK
        hi = np.minimum(lo + _BLOCK, len(self.keys))
        for _ in range(_BLOCK.bit_length()):
            mid = (lo + hi) // 2
            right = self.keys[np.minimum(mid, len(self.keys) - 1)] < needles
            lo, hi = np.where(right, mid + 1, lo), np.where(right, hi, mid)
        pos = np.minimum(lo, len(self.keys) - 1)
        hit = self.keys[pos] == needles
        owners = self.owners[pos[hit]].astype(np.int64)
        self.release()
        return hit, owners

    def release(self) -> None:
        for mapped in self._maps:
            mapped.madvise(mmap.MADV_DONTNEED)


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


class IdLog:
    """Append-only ids, one a line in a file (a version's ``ids.txt`` is written this way);
    RAM holds 8 bytes an id, its end offset, and an id is read back with ``pread`` (only
    duplicates and leaks need theirs)."""

    def __init__(self, path: Path) -> None:
        self._handle = path.open("w+b")
        self._ends = np.zeros(1024, dtype=np.int64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def extend(self, ids: list[str]) -> None:
        lines = [f"{i}\n".encode() for i in ids]
        if self._count + len(lines) > len(self._ends):
            self._ends = np.resize(self._ends, 2 * (self._count + len(lines)))
        start = int(self._ends[self._count - 1]) if self._count else 0
        self._ends[self._count : self._count + len(lines)] = start + np.cumsum(
            np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
        )
        self._count += len(lines)
        self._handle.write(b"".join(lines))

    def __getitem__(self, index: int) -> str:
        start = int(self._ends[index - 1]) if index else 0
        self._handle.flush()
        line = os.pread(self._handle.fileno(), int(self._ends[index]) - start - 1, start)
        return line.decode()

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


def write_index_files(index_dir: Path, exact: np.ndarray, meta: dict) -> None:
    """Complete an ``index/`` dir whose ``ids.txt`` and ``minhash.u32`` the IdLog and the
    SignatureFile already wrote."""
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
