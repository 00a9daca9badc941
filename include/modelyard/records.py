"""Raw record shapes -> one canonical, normalised chat record.

Accepted raw shapes (one JSON object per line, optional ``id``):
``{"prompt", "completion"}``, ``{"messages": [{"role", "content"}, ...]}`` (last turn is the
assistant's) and ``{"instruction", "input"?, "output"}``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: The documented rejection reasons: the contract curation writes and validation checks.
REASONS = {
    "malformed": "not UTF-8, not JSON, nested deeper than the parser allows, or a lone surrogate",
    "schema": "JSON, but none of the accepted shapes, an empty prompt or an id not one text line",
    "quality": "failed a heuristic (length, repetition, symbols, trivial answer) or the classifier",
    "duplicate": "same normalised text as an earlier record (duplicate_of names it)",
    "near_duplicate": "MinHash-LSH near-duplicate of an earlier record (duplicate_of names it)",
    "duplicate_id": "its id is already used by a different kept record of this partition",
    "contamination": "training record overlapping the held-out side or the eval suite",
    "oversized": "line longer than max_line_bytes (its first max_line_bytes are quarantined)",
    "truncated": "the cut tail of a .gz file that ends mid-stream (the lines before it are kept)",
}

ROLES = ("system", "user", "assistant")
#: Raw files named ``feedback-*`` hold harvested production feedback (``modelyard.feedback``):
#: curated like any raw data, counted apart in the manifest.
FEEDBACK_PREFIX = "feedback-"

# RE2 syntax (Arrow compute): the batch is normalised in C++, not one Python call a string.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{200b}-\x{200d}\x{2060}\x{feff}]"
_ODD_SPACE = r"[\t\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
_ANY_SPACE = _ODD_SPACE.replace("[", "[ ", 1)
# Runs of spaces that need rewriting (2+ long, or holding a tab or Unicode space): a lone
# space between words does not match, which keeps the pass fast.
_SPACES = f"{_ANY_SPACE}*{_ODD_SPACE}{_ANY_SPACE}*|{_ANY_SPACE}{{2,}}"


# Ids are stored one a line (a version's ``index/ids.txt``, read with ``splitlines``): no
# character that ends a line there, nor any other control character.
_ID_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SchemaError(ValueError):
    """The line is JSON but not one of the accepted shapes."""


def prompt_of(messages: list[dict[str, str]]) -> str:
    """The user turns before the final assistant turn, the contract's ``prompt``."""
    return "\n".join(m["content"] for m in messages[:-1] if m["role"] == "user")


def text_of(messages: list[dict[str, str]]) -> str:
    """All turns, the unit of dedup, near-dup and contamination checks."""
    return "\n".join(m["content"] for m in messages)


@dataclass(frozen=True)
class Record:
    """One parsed record (``parse``; the pipeline works on whole batches instead)."""

    id: str
    messages: list[dict[str, str]]
    source: dict[str, object]

    @property
    def prompt(self) -> str:
        return prompt_of(self.messages)

    @property
    def completion(self) -> str:
        return self.messages[-1]["content"]

    @property
    def text(self) -> str:
        return text_of(self.messages)


# Anything the rewrites below would change, or a string starting or ending in (Unicode)
# white space: most texts match none of it and skip the five rewriting passes.
_NEEDS_WORK = rf"\r|{_CONTROL}|{_SPACES}| \n|\n |\n\n\n|^[\s\pZ]|[\s\pZ]$"


def normalize_batch(texts: list[str]) -> list[str]:
    """NFC, no control or zero-width characters, single spaces, no space around line breaks,
    at most one blank line, stripped."""
    # unicodedata, not pc.utf8_normalize: pyarrow 25 returned decomposed text unchanged.
    # ``isascii`` is a flag lookup in CPython, and ASCII text is always NFC.
    out = [
        t if t.isascii() or unicodedata.is_normalized("NFC", t) else unicodedata.normalize("NFC", t)
        for t in texts
    ]
    arr = pa.array(out, pa.large_string())
    todo = np.flatnonzero(pc.match_substring_regex(arr, _NEEDS_WORK).to_numpy(zero_copy_only=False))
    if not len(todo):
        return out
    arr = arr.take(pa.array(todo))
    arr = pc.replace_substring_regex(arr, r"\r\n?", "\n")
    arr = pc.replace_substring_regex(arr, _CONTROL, "")
    arr = pc.replace_substring_regex(arr, _SPACES, " ")
    arr = pc.replace_substring_regex(arr, r" ?\n ?", "\n")
    arr = pc.replace_substring_regex(arr, r"\n{3,}", "\n\n")
    for i, text in zip(todo.tolist(), pc.utf8_trim_whitespace(arr).to_pylist(), strict=True):
        out[i] = text
    return out


def normalize(text: str) -> str:
    return normalize_batch([text])[0]


def content_id(text: str) -> str:
    """Stable id of a record that came without one."""
    return "c-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _text(obj: dict, key: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise SchemaError(f"field {key!r} must be a string")
    return value


def _raw_messages(obj: dict) -> list[dict[str, str]]:
    if "messages" in obj:
        turns = obj["messages"]
        if not isinstance(turns, list) or len(turns) < 2:
            raise SchemaError("messages must be a list of at least two turns")
        if not all(isinstance(t, dict) and t.get("role") in ROLES for t in turns):
            raise SchemaError(f"every turn needs a role in {ROLES}")
        if turns[-1]["role"] != "assistant":
            raise SchemaError("the last turn must be the assistant's")
        return [{"role": t["role"], "content": _text(t, "content")} for t in turns]
    if "prompt" in obj or "completion" in obj:
        prompt, completion = _text(obj, "prompt"), _text(obj, "completion")
    elif "instruction" in obj or "output" in obj:
        parts = (_text(obj, "instruction"), _text(obj, "input", required=False))
        prompt, completion = "\n".join(p for p in parts if p), _text(obj, "output")
    else:
        raise SchemaError("no prompt/completion, messages or instruction/output fields")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]


def extract(obj: object) -> tuple[list[dict[str, str]], str | None]:
    """Turns (not yet normalised) and the given id of one decoded JSON line."""
    if not isinstance(obj, dict):
        raise SchemaError("a line must be a JSON object")
    raw_id = obj.get("id")
    if raw_id is None:
        return _raw_messages(obj), None
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise SchemaError("id must be a string or an integer")
    record_id = str(raw_id)
    if not record_id.strip() or _ID_BREAKS.search(record_id):
        raise SchemaError("id must be one non-empty line without control characters")
    return _raw_messages(obj), record_id


def check_prompt(messages: list[dict[str, str]]) -> None:
    """Raises SchemaError when no user turn before the answer has content (once normalised)."""
    if not any(m["role"] == "user" and m["content"] for m in messages[:-1]):
        raise SchemaError("empty prompt")


def parse(obj: object, source: dict) -> Record:
    """Canonical normalised record of one decoded JSON line (one at a time; the pipeline
    normalises whole batches)."""
    messages, record_id = extract(obj)
    contents = normalize_batch([m["content"] for m in messages])
    messages = [{**m, "content": c} for m, c in zip(messages, contents, strict=True)]
    check_prompt(messages)
    text_id = record_id if record_id is not None else content_id(text_of(messages))
    return Record(text_id, messages, source)
