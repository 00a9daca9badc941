"""Deterministic held-out split.

The split key is the record's first LSH band (``rows`` MinHash values hashed together),
salted. It depends only on the record's own text, so a record keeps its side whatever else
the partition holds, across re-runs and backfills. Two records share it with probability
J**rows: near-duplicates often do (J=0.9 -> ~0.5 at 6 rows) while records that merely share
template boilerplate do not, which a single MinHash value (probability J) would clump
together. Near-duplicates at or above the threshold never both survive dedup, and the
contamination check rejects the training side of any that cross the split.
"""

from __future__ import annotations

import zlib

import numpy as np

from modelyard.curation.minhash import band_keys, mix64


def is_eval(sigs: np.ndarray, rows: int, eval_fraction: float, seed: str) -> np.ndarray:
    salt = np.uint64(zlib.crc32(seed.encode())) << np.uint64(32)
    key = mix64(band_keys(sigs, 1, rows)[:, 0] ^ salt)
    return (key >> np.uint64(11)).astype(np.float64) / float(1 << 53) < eval_fraction
