"""Stream the lines of a raw partition with their lineage, in bounded memory.

Hand-written line splitting rather than Arrow's JSON reader or ``datasets``: both reject a
whole file on one malformed or non-UTF-8 line, and curation must keep every line and its
position (file, line number) whatever it contains. Files are read in fixed-size chunks, so a
line without an end (gigabytes without a newline) costs ``max_line_bytes`` of memory, and
a ``.gz`` file cut short keeps every line decompressed before the cut.

A file that cannot be read at all (missing, not a regular file, no permission, a ``.gz``
that is not gzip) is an ``InputError`` naming it; a ``.gz`` that breaks after its first
bytes keeps what was read and ends in one ``truncated`` line.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import BinaryIO, TypeVar

T = TypeVar("T")
SUFFIXES = (".jsonl", ".jsonl.gz")
BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


class InputError(ValueError):
    """A raw input that cannot be read at all; the message names it."""


@dataclass
class RawBatch:
    """Raw lines (line breaks removed) and where they came from: ``spans`` of (file, first
    line number, line count), file as "<partition dir>/<file name>" (stable wherever the
    partition is mounted). ``cut`` maps the index of a line that was not read whole to its
    (reason, detail): ``oversized`` or ``truncated``. Compact, because with workers the main
    process reads and ships every batch: per-line work belongs to ``lines`` and ``sources``,
    run by the preparer."""

    data: list[bytes] = field(default_factory=list)
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    cut: dict[int, tuple[str, str]] = field(default_factory=dict)

    def lines(self) -> list[bytes]:
        """Each line without its CR and a leading UTF-8 byte-order mark (an editor's, not data)."""
        return list(map(_clean, self.data))

    def line(self, row: int) -> bytes:
        return _clean(self.data[row])

    def sources(self) -> list[dict]:
        """``{"file", "line"}`` (1-based) of each line."""
        return [
            {"file": name, "line": number}
            for name, first, count in self.spans
            for number in range(first, first + count)
        ]

    def source(self, row: int) -> dict:
        for name, first, count in self.spans:
            if row < count:
                return {"file": name, "line": first + row}
            row -= count
        raise IndexError(row)


def _clean(line: bytes) -> bytes:
    line = line.rstrip(b"\r")
    return line[3:] if line[:3] == BOM else line


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.name.lower().endswith(".gz") and head and head != _GZIP_MAGIC:
        raise InputError(f"{path}: not a gzip file (named .gz)")


def raw_files(source: Path) -> list[Path]:
    """The partition's ``.jsonl``/``.jsonl.gz`` files in name order (or ``source`` itself),
    each checked to be a readable regular file: an entry named like input that cannot be read
    is an error, never silently skipped."""
    if source.is_file():
        files = [source]
    elif source.is_dir():
        named = sorted(p for p in source.iterdir() if _is_raw(p))
        for path in named:
            if not path.is_file():
                raise InputError(f"{path}: named like raw input but not a regular file")
        files = named
        if not files:
            raise InputError(f"no .jsonl or .jsonl.gz files in {source}")
    else:
        raise FileNotFoundError(f"no raw input at {source}")
    for path in files:
        _check_readable(path)
    return files


def _is_raw(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)  # part-1.JSONL is raw input too


def ignored_entries(source: Path) -> list[str]:
    """What a partition directory holds that curation does not read (other suffixes such as
    ``.json`` or ``.jsonl.bz2``, sub-directories), named in the manifest: a file dropped
    without a word would be data lost without a word."""
    if not source.is_dir():
        return []
    return sorted(
        os.fsencode(p.name).decode("utf-8", errors="backslashreplace") + "/" * p.is_dir()
        for p in source.iterdir()
        if not _is_raw(p)
    )


def lineage_name(path: Path) -> str:
    """ "<dir>/<file>"; bytes of a non-UTF-8 file name are kept as backslash escapes."""
    name = f"{path.parent.name}/{path.name}"
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _oversized(limit: int) -> tuple[str, str]:
    return "oversized", f"line longer than max_line_bytes={limit}"


# A line cut at ``max_line_bytes`` keeps this many bytes more, so an e-mail address or phone
# number straddling the cut is scrubbed whole before the published text is cut to the limit.
PII_LOOKAHEAD = 256


def _blocks(handle: BinaryIO, path: Path, limit: int) -> Iterator[tuple[list[bytes], dict]]:
    """The file's lines, a block at a time, and {index in block: (reason, detail)} of a line
    not read whole: longer than ``limit`` (its first ``limit + PII_LOOKAHEAD`` bytes are
    kept) or cut off by a broken ``.gz`` stream (always the last line)."""
    keep = limit + PII_LOOKAHEAD  # of a cut line: what the scrubber reads before the cut
    pending = b""  # the line being read, without its end yet
    skipping = False  # inside an oversized line, dropping bytes until its end
    read_any = False
    while True:
        try:  # read1: a broken stream's error loses nothing already decompressed
            chunk = handle.read1(_CHUNK)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            if not read_any:
                raise InputError(f"{path}: not a readable gzip stream: {exc}") from None
            if skipping:  # the cut line is the oversized one, already rejected as such
                return
            detail = f"{path.name} ends mid-stream ({exc}); this is the cut tail"
            yield [pending[:limit]], {0: ("truncated", detail)}
            return
        except OSError as exc:
            raise InputError(f"{path}: read failed: {exc.strerror or exc}") from None
        if not chunk:
            break
        read_any = True
        lines = chunk.split(b"\n")
        if skipping:
            if len(lines) == 1:
                continue
            skipping, pending, lines = False, b"", lines[1:]
        lines[0] = pending + lines[0]
        pending = lines.pop()
        cut = {}
        if lines and max(map(len, lines)) > limit:
            cut = {i: _oversized(limit) for i, line in enumerate(lines) if len(line) > limit}
            lines = [line[:keep] for line in lines]
        if len(pending) > keep:
            cut[len(lines)] = _oversized(limit)
            lines.append(pending[:keep])
            pending, skipping = b"", True
        yield lines, cut
    if pending and not skipping:
        yield [pending], {}


def read_batches(files: Iterable[Path], size: int, max_line_bytes: int) -> Iterator[RawBatch]:
    """Batches of ``size`` lines in input order (a batch may span files)."""
    batch = RawBatch()
    for path in files:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        name = lineage_name(path)
        try:
            handle = opener(path, "rb")
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
        with handle:
            first = 1
            for lines, cut in _blocks(handle, path, max_line_bytes):
                taken = 0
                while taken < len(lines):
                    room = size - len(batch.data)
                    part = lines[taken : taken + room]
                    batch.cut.update(
                        (len(batch.data) + i - taken, note)
                        for i, note in cut.items()
                        if taken <= i < taken + len(part)
                    )
                    batch.data += part
                    batch.spans.append((name, first, len(part)))
                    first += len(part)
                    taken += len(part)
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
