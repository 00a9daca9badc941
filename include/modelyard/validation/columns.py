"""The columns the GX gate validates, derived from a curated staging dir's files.

Plain Python over msgspec-decoded lines, no pandas or GX: gate workers import only this
(see ``gate._columns``). Each record becomes a few flags, lengths, the kinds of PII found
in it and two 64-bit hashes, never its text.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import msgspec
import numpy as np

from modelyard import pii
from modelyard.records import ROLES


class _Turn(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    content: str


class _Source(msgspec.Struct, forbid_unknown_fields=True):
    file: str
    line: int


class _Record(msgspec.Struct, forbid_unknown_fields=True):
    """A curated record, exactly: every field required, no other field allowed."""

    id: str
    messages: list[_Turn]
    prompt: str
    completion: str
    source: _Source
    quality_score: float | None
    split: str


class _Rejected(msgspec.Struct, forbid_unknown_fields=True):
    """A published rejection: scrubbed ``text``, never ``raw``/``raw_b64``."""

    reason: str
    detail: str
    duplicate_of: str | None
    source: _Source
    id: str | None
    text: str


def _hashes(values: list[bytes]) -> np.ndarray:
    digests = b"".join(hashlib.blake2b(v, digest_size=8).digest() for v in values)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def _pii_left(texts: list[str]) -> list[str]:
    return [",".join(sorted(set(kinds))) if kinds else "" for kinds in pii.find_batch(texts)]


def _decode_all(lines: list[bytes], kind: type) -> list:
    """Each line decoded as ``kind``, or None where it is not exactly that. One
    comprehension first (a try block a line cost as much as the decoding); line by line
    only for a batch that holds a line that is not."""
    decode = msgspec.json.Decoder(kind).decode
    try:
        return [decode(line) for line in lines]
    except (msgspec.DecodeError, RecursionError):
        pass
    out = []
    for line in lines:
        try:
            out.append(decode(line))
        except (msgspec.DecodeError, RecursionError):
            out.append(None)
    return out


def _placed(values: list, rows: list[int], fallback: list) -> list:
    """``values`` (of the decoded lines, in order) with ``fallback[k]`` inserted at each
    row ``rows[k]`` (ascending) of a line that did not decode."""
    for row, value in zip(rows, fallback, strict=True):
        values.insert(row, value)
    return values


def record_columns(lines: list[bytes], side: str) -> dict[str, object]:
    """The per-record columns of a batch of ``side``'s lines, and its hashes.

    Column by column over the decoded records (numbers as numpy arrays, which pandas takes
    without a per-value conversion): a loop appending to a dozen lists per record was
    ~30% of the gate's CPU."""
    records = _decode_all(lines, _Record)
    good = [r for r in records if r is not None]
    bad = [i for i, r in enumerate(records) if r is None]
    at = np.flatnonzero(np.fromiter((r is not None for r in records), bool, len(records)))

    def numbers(values: list, fill: object, dtype: type) -> np.ndarray:
        """A numeric column; a line that is not a record gets ``fill`` (fails with it)."""
        out = np.full(len(records), fill, dtype=dtype)
        out[at] = values
        return out

    texts = ["\n".join([m.content for m in r.messages]) for r in good]
    prompts = ["\n".join([m.content for m in r.messages[:-1] if m.role == "user"]) for r in good]
    matches = [
        bool(r.messages) and r.completion == r.messages[-1].content and r.prompt == prompt
        for r, prompt in zip(good, prompts, strict=True)
    ]
    prompt_chars = [len(r.prompt) for r in good]
    completion_chars = [len(r.completion) for r in good]
    # The prompt and completion are parts of the text when they match the messages; nothing
    # of the contract holds for a line that is not a record, so all of it is searched.
    every_field = [
        text if match else f"{text}\n{r.prompt}\n{r.completion}"
        for r, text, match in zip(good, texts, matches, strict=True)
    ]
    broken = [lines[i] for i in bad]
    columns: dict[str, object] = {
        "contract": numbers([True] * len(good), False, bool),
        "on_its_side": numbers([r.split == side for r in good], False, bool),
        "last_role": _placed(
            [r.messages[-1].role if r.messages else "" for r in good], bad, [""] * len(bad)
        ),
        "roles_known": numbers(
            [all(m.role in ROLES for m in r.messages) for r in good], False, bool
        ),
        "matches_messages": numbers(matches, False, bool),
        "id_chars": numbers([len(r.id.strip()) for r in good], -1, np.int64),
        "prompt_chars": numbers(prompt_chars, -1, np.int64),
        "completion_chars": numbers(completion_chars, -1, np.int64),
        "record_chars": numbers(
            [p + c for p, c in zip(prompt_chars, completion_chars, strict=True)], -1, np.int64
        ),
        "source_line": _placed([r.source.line for r in good], bad, [0] * len(bad)),
        "quality_score": numbers(
            [math.nan if r.quality_score is None else r.quality_score for r in good],
            math.nan,
            np.float64,
        ),
    }
    fallback = [line.decode("utf-8", errors="replace") for line in broken]
    columns["pii_left"] = _pii_left(_placed(every_field, bad, fallback))
    columns["id_hash"] = _hashes(_placed([r.id.encode() for r in good], bad, broken))
    columns["text_hash"] = _hashes(_placed([t.encode() for t in texts], bad, broken))
    return columns


def rejected_columns(lines: list[bytes]) -> dict[str, list]:
    """The columns of a batch of published rejections."""
    rows = _decode_all(lines, _Rejected)
    texts = [
        r.text if r is not None else line.decode("utf-8", errors="replace")
        for line, r in zip(lines, rows, strict=True)
    ]
    return {
        "contract": [r is not None for r in rows],
        "reason": ["" if r is None else r.reason for r in rows],
        "pii_left": _pii_left(texts),
    }


def spans(path: Path, size: int) -> list[tuple[int, int]]:
    """Byte ranges of about ``size`` bytes covering ``path``, each starting at a line start."""
    total, spans, start = path.stat().st_size, [], 0
    with path.open("rb") as handle:
        while start < total:
            handle.seek(start + size)
            handle.readline()  # on to the end of the line the cut fell in
            end = min(handle.tell(), total) if start + size < total else total
            spans.append((start, end))
            start = end
    return spans


def columns_of(path: str, start: int, end: int, kind: str) -> dict[str, list]:
    """The columns of the lines in bytes ``[start, end)`` of ``path``, a file of ``kind``
    (``train``, ``eval`` or ``rejected``): the unit of work of a gate worker."""
    with open(path, "rb") as handle:
        handle.seek(start)
        lines = handle.read(end - start).split(b"\n")
    if lines[-1] == b"":  # the end of the last line, not a line
        lines.pop()
    return rejected_columns(lines) if kind == "rejected" else record_columns(lines, kind)
