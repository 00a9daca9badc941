"""Planting helpers for the curation tests: raw lines, distinct prose, near-duplicates."""

from __future__ import annotations

import json
import random
from pathlib import Path


def write_lines(path: Path, lines: list[dict | bytes]) -> Path:
    """One raw line per item: dicts as JSON, bytes verbatim."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for line in lines:
            handle.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            handle.write(b"\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


WORDS = """
river delta bird species migrate spring southern wetland volunteer count morning eastern
dike researcher tag sample follow route sea northern breeding ground summer short day long
city council vote extend network kilometre year library open weekend reader borrow novel
history science garden harvest apple orchard farmer market price weather storm coast
harbour ship cargo engine repair mechanic school teacher student exam lesson music choir
concert
"""
VOCAB = WORDS.split()


def prose(seed: int, words: int = 60) -> str:
    """Distinct pseudo-text: two seeds share almost no word 5-grams."""
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(words))


def long_record(seed: int, record_id: str | None = None) -> dict:
    """A record long enough for word n-gram near-dup and contamination checks."""
    record = {
        "prompt": f"Summarise this report.\n{prose(seed)}",
        "completion": prose(seed + 10_000, 12),
    }
    if record_id:
        record["id"] = record_id
    return record


def edited(record: dict) -> dict:
    """The same record with its first report word changed: a near-duplicate (Jaccard ~0.9)."""
    head, body = record["prompt"].split("\n", 1)
    return {**record, "prompt": f"{head}\nchanged {body.split(' ', 1)[1]}"}
