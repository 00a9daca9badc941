"""Sample raw partitions for the demo and tests.

The task is structured extraction: a sentence about a person goes in, a JSON object comes out.
It is a pattern a LoRA on a tiny model learns on CPU in under a minute, its completions are
checkable (exact match, ROUGE-L, JSON validity), and the three raw shapes modelyard accepts are
all represented.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date, timedelta
from pathlib import Path

NAMES = [
    "Alice",
    "Bruno",
    "Chen",
    "Dana",
    "Elif",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaito",
    "Lena",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yara",
    "Zoltan",
]
CITIES = [
    "Paris",
    "Lima",
    "Oslo",
    "Cairo",
    "Delhi",
    "Tokyo",
    "Quito",
    "Rome",
    "Seoul",
    "Dakar",
    "Lagos",
    "Porto",
    "Riga",
    "Hanoi",
    "Accra",
    "Kyiv",
]
JOBS = ["baker", "pilot", "nurse", "farmer", "painter", "teacher", "chemist", "sailor"]
TEMPLATES = [
    "{name} is a {job} who lives in {city}.",
    "In {city}, {name} works as a {job}.",
    "{name} works as a {job} in {city}.",
    "Meet {name}, a {job} from {city}.",
]
INSTRUCTION = "Extract the person as JSON with keys name, job, city."


def _example(rng: random.Random) -> tuple[str, str]:
    name, city, job = rng.choice(NAMES), rng.choice(CITIES), rng.choice(JOBS)
    sentence = rng.choice(TEMPLATES).format(name=name, city=city, job=job)
    return sentence, json.dumps({"name": name, "job": job, "city": city})


def _record(rng: random.Random, i: int) -> dict:
    """One raw record in one of the three accepted shapes, chosen round-robin."""
    sentence, answer = _example(rng)
    shape = i % 3
    if shape == 0:
        return {"prompt": f"{INSTRUCTION}\n{sentence}", "completion": answer}
    if shape == 1:
        return {
            "messages": [
                {"role": "user", "content": f"{INSTRUCTION}\n{sentence}"},
                {"role": "assistant", "content": answer},
            ]
        }
    return {"instruction": INSTRUCTION, "input": sentence, "output": answer}


def curated_records(n: int, seed: int = 0) -> list[dict]:
    """The sample task already in the curated record shape, unique by content.

    For tests and benchmarks of training and evaluation that must not depend on the curator
    (whose own tests cover the way from raw partitions to this shape).
    """
    rng = random.Random(f"curated-{seed}")
    seen: set[str] = set()
    records = []
    while len(records) < n:
        sentence, answer = _example(rng)
        prompt = f"{INSTRUCTION}\n{sentence}"
        record_id = hashlib.sha256(f"{prompt}\x00{answer}".encode()).hexdigest()[:16]
        if record_id in seen:
            continue
        seen.add(record_id)
        records.append(
            {
                "id": record_id,
                "prompt": prompt,
                "completion": answer,
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ],
                "source": {"file": "sample", "line": len(records) + 1},
                "quality_score": None,
            }
        )
    return records


def write_curated(out_dir: Path, train: list[dict], held_out: list[dict]) -> Path:
    """``out_dir/{train,eval}.jsonl`` as a published dataset version lays them out."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("eval", held_out)):
        (out_dir / f"{split}.jsonl").write_text(
            "".join(json.dumps({**r, "split": split}) + "\n" for r in rows), encoding="utf-8"
        )
    return out_dir


def write_partition(raw_root: Path, day: date, n: int = 240, seed: int = 0) -> Path:
    """Write ``raw/<day>/part-0.jsonl``; deterministic per (day, seed), with a few exact dups."""
    rng = random.Random(f"{seed}-{day.isoformat()}")
    records = [_record(rng, i) for i in range(n)]
    records += records[: max(1, n // 40)]  # planted exact duplicates, as real exports have
    out = raw_root / day.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "part-0.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_sample_partitions(raw_root: Path, end: date, days: int = 3, n: int = 240) -> list[Path]:
    """The demo's history: ``days`` consecutive partitions ending at ``end``."""
    return [write_partition(raw_root, end - timedelta(days=k), n=n) for k in reversed(range(days))]


def corpus_text(n: int = 2000, seed: int = 0) -> list[str]:
    """Text to train the tiny tokenizer on: the task's vocabulary plus JSON punctuation."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        sentence, answer = _example(rng)
        lines += [INSTRUCTION, sentence, answer]
    return lines
