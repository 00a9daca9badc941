"""The stateless half of pass 1: a batch of raw lines -> decoded, normalised, PII-scrubbed,
heuristically checked records with their hashes and signatures.

It depends on nothing but the batch, so with ``workers > 1`` batches are prepared in worker
processes while the main process judges duplicates in input order (the order, hence the
output, is the same either way). A bounded window of batches in flight keeps memory flat.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from modelyard.curation import minhash, pii
from modelyard.curation.quality import heuristic_issues
from modelyard.curation.reader import RawLine, batched, read_lines
from modelyard.curation.records import Record, SchemaError, build, extract, normalize_batch
from modelyard.settings import CurationSettings


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str
    raw: str | bytes
    source: dict
    record_id: str | None = None


@dataclass
class Prepared:
    """One batch, ready for dedup; ``exact``, ``sigs`` and ``grams`` align with ``records``."""

    lines: int
    rejected: list[Rejection]
    pii: Counter
    records: list[Record]
    raws: list[str]
    exact: np.ndarray  # uint64 hash of the normalised text
    sigs: np.ndarray  # MinHash of the word near_dup_ngram-grams
    grams: minhash.Shingles  # word contamination_ngram-gram hashes


def exact_hashes(texts: list[str]) -> np.ndarray:
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            for t in texts
        ),
        dtype=np.uint64,
        count=len(texts),
    )


def _decode(line: RawLine, rejected: list[Rejection]) -> tuple | None:
    """Raw turns, given id, text and lineage of a line; rejects what is not a record."""
    source = {"file": line.file, "line": line.line}
    try:
        raw = line.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"not UTF-8: {exc.reason} at byte {exc.start}"
        rejected.append(Rejection("malformed", detail, line.data, source))
        return None
    try:
        messages, record_id = extract(json.loads(raw))
    except SchemaError as exc:
        rejected.append(Rejection("schema", str(exc), raw, source))
        return None
    except ValueError as exc:
        rejected.append(Rejection("malformed", f"not JSON: {exc}", raw, source))
        return None
    return messages, record_id, raw, source


def prepare(lines: list[RawLine], settings: CurationSettings) -> Prepared:
    rejected: list[Rejection] = []
    decoded = [d for line in lines if (d := _decode(line, rejected)) is not None]
    contents = iter(normalize_batch([m["content"] for d in decoded for m in d[0]]))
    parsed: list[tuple[Record, str]] = []
    for messages, record_id, raw, source in decoded:
        turns = [{"role": m["role"], "content": next(contents)} for m in messages]
        try:
            parsed.append((build(turns, record_id, source), raw))
        except SchemaError as exc:
            rejected.append(Rejection("schema", str(exc), raw, source))
    counts: Counter = Counter()
    turns = [m for record, _ in parsed for m in record.messages]
    for message, clean in zip(turns, pii.scrub_batch([m["content"] for m in turns], counts)):
        message["content"] = clean
    texts = [record.text for record, _ in parsed]
    words = minhash.word_hashes(texts)
    shingles = minhash.ngram_hashes(words, settings.near_dup_ngram)
    issues = heuristic_issues([r for r, _ in parsed], texts, shingles, settings)
    passing = [i for i, issue in enumerate(issues) if issue is None]
    for (record, raw), issue in zip(parsed, issues, strict=True):
        if issue is not None:
            rejected.append(Rejection("quality", issue, raw, record.source, record.id))
    return Prepared(
        lines=len(lines),
        rejected=rejected,
        pii=counts,
        records=[parsed[i][0] for i in passing],
        raws=[parsed[i][1] for i in passing],
        exact=exact_hashes([texts[i] for i in passing]),
        sigs=minhash.signatures(shingles, settings.minhash_perm)[passing],
        grams=minhash.ngram_hashes(words, settings.contamination_ngram).take(passing),
    )


def prepared_batches(files: list[Path], settings: CurationSettings) -> Iterator[Prepared]:
    """Prepared batches in input order; in worker processes when there is more than one
    batch and ``settings.workers > 1`` (spawned, not forked: Arrow runs thread pools)."""
    batches = batched(read_lines(files), settings.batch_size)
    head = list(islice(batches, 2))
    batches = chain(head, batches)
    if len(head) < 2 or settings.workers <= 1:
        yield from (prepare(batch, settings) for batch in batches)
        return
    with ProcessPoolExecutor(settings.workers, mp_context=get_context("spawn")) as pool:
        in_flight: deque = deque()
        for batch in batches:
            in_flight.append(pool.submit(prepare, batch, settings))
            if len(in_flight) > 2 * settings.workers:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
