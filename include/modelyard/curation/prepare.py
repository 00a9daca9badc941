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
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import msgspec
import numpy as np

from modelyard import pii
from modelyard.curation import minhash
from modelyard.curation.quality import heuristic_issues
from modelyard.curation.reader import InputError, RawBatch, read_batches
from modelyard.records import (
    SchemaError,
    check_prompt,
    content_id,
    extract,
    normalize_batch,
    prompt_of,
    text_of,
)
from modelyard.settings import CurationSettings
from modelyard.workers import OrderedMap, Workers, workers_for

_DECODE = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode
_NOT_JSON = object()  # ``None`` is the JSON line ``null``


@dataclass
class Rejection:
    """A rejected line: ``raw`` is the line as read (it may hold PII: quarantine only);
    ``text`` what the published ``rejected.jsonl`` shows, PII-scrubbed (see ``public_texts``)."""

    reason: str
    detail: str
    raw: bytes
    source: dict
    record_id: str | None = None
    text: str = ""


@dataclass
class Prepared:
    """One batch, ready for dedup; every list and array aligns with ``ids``.

    ``bodies`` are the curated records as JSON without ``quality_score`` and ``split``
    (known only after judging); ``rows`` the record's line in the raw batch (whose raw line
    and source the main process still holds: they are not shipped back from a worker).
    """

    lines: int
    rejected: list[Rejection]
    pii: Counter
    rows: list[int]
    ids: list[str]
    bodies: list[bytes]
    exact: np.ndarray  # uint64 hash of the normalised text
    sigs: np.ndarray  # MinHash of the word near_dup_ngram-grams
    grams: minhash.Shingles  # word contamination_ngram-gram hashes


def exact_hashes(texts: list[str]) -> np.ndarray:
    digests = b"".join(hashlib.blake2b(t.encode(), digest_size=8).digest() for t in texts)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def _object(data: bytes) -> object:
    """The decoded line; raises ValueError naming why it is not UTF-8 JSON text."""
    try:
        return _DECODE(data)
    except (ValueError, RecursionError):  # stricter than ``json``, which gives the detail
        pass
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        obj = json.loads(raw)
    except RecursionError:
        raise ValueError("not JSON: nested deeper than the parser allows") from None
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    try:  # json accepts escaped lone surrogates (\ud800): valid JSON, but not Unicode text
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("JSON holding a lone surrogate escape: not Unicode text") from None
    return obj


def _decode(batch: RawBatch, rejected: list[Rejection]) -> list[tuple]:
    """(turns, given id, row, raw line, source) of each line that has an accepted shape."""
    decoded = []
    for row, (data, source) in enumerate(zip(batch.lines(), batch.sources(), strict=True)):
        if row in batch.cut:
            rejected.append(Rejection(*batch.cut[row], data, source))
            continue
        try:
            messages, record_id = extract(_object(data))
        except SchemaError as exc:
            rejected.append(Rejection("schema", str(exc), data, source))
            continue
        except ValueError as exc:
            rejected.append(Rejection("malformed", str(exc), data, source))
            continue
        decoded.append((messages, record_id, row, data, source))
    return decoded


_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> str:
    """JSON string escapes resolved, so ``\\u0040`` or ``\\n`` cannot hide PII from the
    scrubber; surrogate escape pairs combine, lone ones become U+FFFD."""
    text = _ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else _SIMPLE[m[2]], text)
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def public_texts(raws: list[bytes], limit: int) -> list[str]:
    """What ``rejected.jsonl`` publishes of lines that never became a record: the line with
    its escapes resolved, normalised and PII-scrubbed like a kept record's text, then cut to
    ``limit`` characters (a cut line arrives with a look-ahead, scrubbed before the cut)."""
    texts = [_unescape(raw.decode("utf-8", errors="replace")) for raw in raws]
    return [text[:limit] for text in pii.scrub_batch(normalize_batch(texts), Counter())]


def _pii_free_ids(decoded: list[tuple]) -> list[tuple]:
    """Ids are published (train, eval and rejected rows, dedup details): a given id holding
    PII (an e-mail address as id) becomes ``pii-<hash>``, the same for the same id, so
    duplicates still meet and lineage still joins."""
    given = [d[1] for d in decoded if d[1] is not None]
    flagged = {rid for rid, found in zip(given, pii.find_batch(given), strict=True) if found}
    if not flagged:
        return decoded
    return [
        (messages, _pseudonym(rid) if rid in flagged else rid, *rest)
        for messages, rid, *rest in decoded
    ]


def _pseudonym(record_id: str) -> str:
    digest = hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8)
    return f"pii-{digest.hexdigest()}"


def _set_contents(
    messages: list[dict[str, str]], transform: Callable[[list[str]], list[str]]
) -> None:
    """Apply a batched text transform to the content of every turn, in place."""
    for message, content in zip(messages, transform([m["content"] for m in messages]), strict=True):
        message["content"] = content


def prepare(batch: RawBatch, settings: CurationSettings) -> Prepared:
    rejected: list[Rejection] = []
    decoded = _pii_free_ids(_decode(batch, rejected))
    _set_contents([m for d in decoded for m in d[0]], normalize_batch)
    parsed = []
    for messages, record_id, row, raw, source in decoded:
        try:
            check_prompt(messages)
        except SchemaError as exc:
            rejected.append(Rejection("schema", str(exc), raw, source))
            continue
        if record_id is None:  # the id names the normalised text, before scrubbing
            record_id = content_id(text_of(messages))
        parsed.append((messages, record_id, row, raw, source))
    counts: Counter = Counter()
    _set_contents([m for p in parsed for m in p[0]], lambda t: pii.scrub_batch(t, counts))
    prompts = [prompt_of(p[0]) for p in parsed]
    completions = [p[0][-1]["content"] for p in parsed]
    texts = [text_of(p[0]) for p in parsed]
    words = minhash.word_hashes(texts)
    shingles = minhash.ngram_hashes(words, settings.near_dup_ngram)
    issues = heuristic_issues(prompts, completions, texts, shingles, settings)
    passing = []
    for i, ((_, record_id, _, raw, source), issue) in enumerate(zip(parsed, issues, strict=True)):
        if issue is None:
            passing.append(i)
        else:
            rejected.append(Rejection("quality", issue, raw, source, record_id, texts[i]))
    unparsed = [r for r in rejected if not r.text]
    for rejection, text in zip(
        unparsed, public_texts([r.raw for r in unparsed], settings.max_line_bytes), strict=True
    ):
        rejection.text = text
    bodies = [
        encode(
            {
                "id": parsed[i][1],
                "messages": parsed[i][0],
                "prompt": prompts[i],
                "completion": completions[i],
                "source": parsed[i][4],
            }
        )
        for i in passing
    ]
    return Prepared(
        lines=len(batch.data),
        rejected=rejected,
        pii=counts,
        rows=[parsed[i][2] for i in passing],
        ids=[parsed[i][1] for i in passing],
        bodies=bodies,
        exact=exact_hashes([texts[i] for i in passing]),
        sigs=minhash.signatures(shingles.take(passing), settings.minhash_perm),
        grams=minhash.ngram_hashes(words, settings.contamination_ngram).take(passing),
    )


def prepared_batches(
    files: list[Path], settings: CurationSettings, workers: Workers | None = None
) -> Iterator[tuple[RawBatch, Prepared]]:
    """(raw batch, prepared batch) in input order; prepared by ``workers`` (or workers of
    its own) when there is more than one batch. Close the generator
    (``contextlib.closing``) when stopping early: pending batches are cancelled."""
    batches = read_batches(files, settings.batch_size, settings.max_line_bytes)
    head = list(islice(batches, 2))
    submitted: deque[RawBatch] = deque()

    def jobs() -> Iterator[tuple[RawBatch, CurationSettings]]:
        for batch in chain(head, batches):
            submitted.append(batch)
            yield batch, settings

    with workers_for(workers, settings.workers) as run:
        pool = run.pool() if len(head) > 1 else None
        for prepared in OrderedMap(pool, prepare, jobs(), 2 * settings.workers + 1):
            yield submitted.popleft(), prepared


def reference_records(
    path: Path, settings: CurationSettings
) -> Iterator[tuple[list[str], list[str]]]:
    """(ids, texts) of an eval reference, a batch at a time: any raw shape curation accepts,
    normalised and PII-scrubbed like curated records so both sides compare alike. The
    reference is trusted input, so a line that is not a record with an id is an
    ``InputError`` naming it, never a silent skip."""
    for batch in read_batches([path], settings.batch_size, settings.max_line_bytes):
        ids, turns = [], []
        for i, (data, source) in enumerate(zip(batch.lines(), batch.sources(), strict=True)):
            where = f"eval reference {path} line {source['line']}"
            if i in batch.cut:
                raise InputError(f"{where}: {batch.cut[i][1]}")
            if not data.strip():
                continue
            try:
                messages, record_id = extract(_object(data))
            except ValueError as exc:  # SchemaError included
                raise InputError(f"{where}: {exc}") from None
            if record_id is None:
                raise InputError(f"{where}: no id (every reference record needs one)")
            ids.append(record_id)
            turns.append(messages)
        contents = [m for messages in turns for m in messages]
        _set_contents(contents, normalize_batch)
        _set_contents(contents, lambda t: pii.scrub_batch(t, Counter()))
        if ids:
            yield ids, [text_of(messages) for messages in turns]
