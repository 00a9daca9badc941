"""Stream the lines of a raw partition with their lineage, in bounded memory.

Hand-written line splitting rather than Arrow's JSON reader or ``datasets``: both reject a
whole file on one malformed or non-UTF-8 line, and curation must keep every line and its
position (file, line number) whatever it contains.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass
class RawBatch:
    """Raw lines (line breaks included) and where they came from: ``spans`` of (file, first
    line number, line count), file as "<partition dir>/<file name>" (stable wherever the
    partition is mounted). Compact, because with workers the main process reads and ships
    every batch: per-line work belongs to ``lines`` and ``sources``, run by the preparer."""

    data: list[bytes] = field(default_factory=list)
    spans: list[tuple[str, int, int]] = field(default_factory=list)

    def lines(self) -> list[bytes]:
        return [line.rstrip(b"\r\n") for line in self.data]

    def sources(self) -> list[dict]:
        """``{"file", "line"}`` (1-based) of each line."""
        return [
            {"file": name, "line": number}
            for name, first, count in self.spans
            for number in range(first, first + count)
        ]


def raw_files(source: Path) -> list[Path]:
    """The partition's ``.jsonl``/``.jsonl.gz`` files in name order (or ``source`` itself)."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"no raw input at {source}")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no .jsonl or .jsonl.gz files in {source}")
    return files


def lineage_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def read_batches(files: Iterable[Path], size: int) -> Iterator[RawBatch]:
    """Batches of ``size`` lines in input order (a batch may span files)."""
    batch = RawBatch()
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        name = lineage_name(path)
        with opener(path, "rb") as handle:
            first = 1
            while chunk := list(islice(handle, size - len(batch.data))):
                batch.data += chunk
                batch.spans.append((name, first, len(chunk)))
                first += len(chunk)
                if len(batch.data) == size:
                    yield batch
                    batch = RawBatch()
    if batch.data:
        yield batch


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``itertools.batched`` (Python 3.12) for 3.11."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
