"""Stream the lines of a raw partition with their lineage, in bounded memory.

Hand-written line splitting rather than Arrow's JSON reader or ``datasets``: both reject a
whole file on one malformed or non-UTF-8 line, and curation must keep every line and its
position (file, line number) whatever it contains.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class RawLine:
    file: str  # "<partition dir>/<file name>": stable wherever the partition is mounted
    line: int  # 1-based
    data: bytes


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


def read_lines(files: Iterable[Path]) -> Iterator[RawLine]:
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        name = lineage_name(path)
        with opener(path, "rb") as handle:
            for number, data in enumerate(handle, start=1):
                yield RawLine(name, number, data.rstrip(b"\r\n"))


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``itertools.batched`` (Python 3.12) for 3.11."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
