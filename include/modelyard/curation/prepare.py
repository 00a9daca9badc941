"""The stateless half of pass 1: a batch of raw lines -> decoded, normalised, PII-scrubbed,
heuristically checked records with their hashes and signatures.

It depends on nothing but the batch, so with ``workers > 1`` batches are prepared in worker
processes while the main process judges duplicates in input order (the order, hence the
output, is the same either way). A bounded window of batches in flight keeps memory flat.

Per-record Python work was the bottleneck, so a record never becomes an object: lines are
decoded by msgspec (falling back to the standard library only for lines it refuses, so
what is accepted and the error details stay those of ``json``), text work runs on whole
batches, and each kept record is encoded to its output JSON once, here.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from multiprocessing import current_process, get_context
from pathlib import Path

import msgspec
import numpy as np

from modelyard.curation import minhash, pii
from modelyard.curation.quality import heuristic_issues
from modelyard.curation.reader import RawBatch, read_batches
from modelyard.curation.records import (
    SchemaError,
    check_prompt,
    content_id,
    extract,
    normalize_batch,
    prompt_of,
    text_of,
)
from modelyard.settings import CurationSettings

_DECODE = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode
_NOT_JSON = object()  # ``None`` is the JSON line ``null``


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str
    raw: str | bytes  # bytes: the line is not UTF-8
    source: dict
    record_id: str | None = None


@dataclass
class Prepared:
    """One batch, ready for dedup; every list and array aligns with ``ids``.

    ``bodies`` are the curated records as JSON without ``quality_score`` and ``split``
    (known only after judging); ``raws`` are the (UTF-8) raw lines, for rejections.
    """

    lines: int
    rejected: list[Rejection]
    pii: Counter
    ids: list[str]
    bodies: list[bytes]
    raws: list[bytes]
    sources: list[dict]
    texts: list[str]
    exact: np.ndarray  # uint64 hash of the normalised text
    sigs: np.ndarray  # MinHash of the word near_dup_ngram-grams
    grams: minhash.Shingles  # word contamination_ngram-gram hashes


def exact_hashes(texts: list[str]) -> np.ndarray:
    digests = b"".join(hashlib.blake2b(t.encode(), digest_size=8).digest() for t in texts)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def _object(data: bytes, source: dict, rejected: list[Rejection]) -> object:
    """The decoded line, or ``_NOT_JSON`` (rejected) when it is not UTF-8 JSON."""
    try:
        return _DECODE(data)
    except ValueError:  # stricter than ``json`` (NaN, lone surrogates): ask it, for its detail
        pass
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"not UTF-8: {exc.reason} at byte {exc.start}"
        rejected.append(Rejection("malformed", detail, data, source))
        return _NOT_JSON
    try:
        return json.loads(raw)
    except ValueError as exc:
        rejected.append(Rejection("malformed", f"not JSON: {exc}", raw, source))
        return _NOT_JSON


def _decode(batch: RawBatch, rejected: list[Rejection]) -> list[tuple]:
    """(turns, given id, raw line, source) of each line that has an accepted shape."""
    decoded = []
    for data, source in zip(batch.lines(), batch.sources(), strict=True):
        obj = _object(data, source, rejected)
        if obj is _NOT_JSON:
            continue
        try:
            messages, record_id = extract(obj)
        except SchemaError as exc:
            rejected.append(Rejection("schema", str(exc), data.decode(), source))
            continue
        decoded.append((messages, record_id, data, source))
    return decoded


def _set_contents(
    messages: list[dict[str, str]], transform: Callable[[list[str]], list[str]]
) -> None:
    """Apply a batched text transform to the content of every turn, in place."""
    for message, content in zip(messages, transform([m["content"] for m in messages]), strict=True):
        message["content"] = content


def prepare(batch: RawBatch, settings: CurationSettings) -> Prepared:
    rejected: list[Rejection] = []
    decoded = _decode(batch, rejected)
    _set_contents([m for d in decoded for m in d[0]], normalize_batch)
    parsed = []
    for messages, record_id, raw, source in decoded:
        try:
            check_prompt(messages)
        except SchemaError as exc:
            rejected.append(Rejection("schema", str(exc), raw.decode(), source))
            continue
        if record_id is None:  # the id names the normalised text, before scrubbing
            record_id = content_id(text_of(messages))
        parsed.append((messages, record_id, raw, source))
    counts: Counter = Counter()
    _set_contents([m for p in parsed for m in p[0]], lambda t: pii.scrub_batch(t, counts))
    prompts = [prompt_of(p[0]) for p in parsed]
    completions = [p[0][-1]["content"] for p in parsed]
    texts = [text_of(p[0]) for p in parsed]
    words = minhash.word_hashes(texts)
    shingles = minhash.ngram_hashes(words, settings.near_dup_ngram)
    issues = heuristic_issues(prompts, completions, texts, shingles, settings)
    passing = []
    for i, ((_, record_id, raw, source), issue) in enumerate(zip(parsed, issues, strict=True)):
        if issue is None:
            passing.append(i)
        else:
            rejected.append(Rejection("quality", issue, raw.decode(), source, record_id))
    bodies = [
        encode(
            {
                "id": parsed[i][1],
                "messages": parsed[i][0],
                "prompt": prompts[i],
                "completion": completions[i],
                "source": parsed[i][3],
            }
        )
        for i in passing
    ]
    return Prepared(
        lines=len(batch.data),
        rejected=rejected,
        pii=counts,
        ids=[parsed[i][1] for i in passing],
        bodies=bodies,
        raws=[parsed[i][2] for i in passing],
        sources=[parsed[i][3] for i in passing],
        texts=[texts[i] for i in passing],
        exact=exact_hashes([texts[i] for i in passing]),
        sigs=minhash.signatures(shingles, settings.minhash_perm)[passing],
        grams=minhash.ngram_hashes(words, settings.contamination_ngram).take(passing),
    )


def prepared_batches(files: list[Path], settings: CurationSettings) -> Iterator[Prepared]:
    """Prepared batches in input order; in worker processes when there is more than one
    batch and ``settings.workers > 1`` (spawned, not forked: Arrow runs thread pools), unless
    this process is daemonic (a pool worker), which may not have children."""
    batches = read_batches(files, settings.batch_size)
    head = list(islice(batches, 2))
    batches = chain(head, batches)
    if len(head) < 2 or settings.workers <= 1 or current_process().daemon:
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
