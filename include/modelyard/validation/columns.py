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
    return [",".join(sorted(set(kinds))) for kinds in pii.find_batch(texts)]


def _decode_all(lines: list[bytes], kind: type) -> list:
    """Each line decoded as ``kind``, or None where it is not exactly that."""
    decode = msgspec.json.Decoder(kind).decode
    out = []
    for line in lines:
        try:
            out.append(decode(line))
        except (msgspec.DecodeError, RecursionError):
            out.append(None)
    return out


def record_columns(lines: list[bytes], side: str) -> dict[str, list]:
    """The per-record columns of a batch of ``side``'s lines, and its hashes."""
    records = _decode_all(lines, _Record)
    columns: dict[str, list] = {
        name: []
        for name in (
            "contract",
            "on_its_side",
            "last_role",
            "roles_known",
            "matches_messages",
            "id_chars",
            "prompt_chars",
            "completion_chars",
            "record_chars",
            "source_line",
            "quality_score",
        )
    }
    every_field, ids, texts = [], [], []
    for line, r in zip(lines, records, strict=True):
        if r is None:  # every other column fails with it: nothing of the contract holds
            for name, value in (("contract", False), ("on_its_side", False), ("last_role", "")):
                columns[name].append(value)
            for name in ("roles_known", "matches_messages"):
                columns[name].append(False)
            for name in ("id_chars", "prompt_chars", "completion_chars", "record_chars"):
                columns[name].append(-1)
            columns["source_line"].append(0)
            columns["quality_score"].append(math.nan)
            every_field.append(line.decode("utf-8", errors="replace"))
            ids.append(line)
            texts.append(line)
            continue
        contents = [m.content for m in r.messages]
        text = "\n".join(contents)
        prompt = "\n".join(m.content for m in r.messages[:-1] if m.role == "user")
        matches = bool(r.messages) and r.completion == contents[-1] and r.prompt == prompt
        columns["contract"].append(True)
        columns["on_its_side"].append(r.split == side)
        columns["last_role"].append(r.messages[-1].role if r.messages else "")
        columns["roles_known"].append(all(m.role in ROLES for m in r.messages))
        columns["matches_messages"].append(matches)
        columns["id_chars"].append(len(r.id.strip()))
        columns["prompt_chars"].append(len(r.prompt))
        columns["completion_chars"].append(len(r.completion))
        columns["record_chars"].append(len(r.prompt) + len(r.completion))
        columns["source_line"].append(r.source.line)
        columns["quality_score"].append(math.nan if r.quality_score is None else r.quality_score)
        # The prompt and completion are parts of the text when they match the messages.
        every_field.append(text if matches else f"{text}\n{r.prompt}\n{r.completion}")
        ids.append(r.id.encode())
        texts.append(text.encode())
    columns["pii_left"] = _pii_left(every_field)
    columns["id_hash"] = _hashes(ids)
    columns["text_hash"] = _hashes(texts)
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
