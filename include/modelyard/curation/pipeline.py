"""Raw partition -> ``train.jsonl``, ``eval.jsonl``, ``rejected.jsonl``, ``manifest.json``.

Two streaming passes in batches. Pass 1 parses, normalises, scrubs PII, applies the
heuristics, dedups (exact and MinHash-LSH, against this run and earlier versions), scores
quality, splits, writes the held-out side and parks training candidates on disk. Pass 2
checks those candidates for contamination once the whole held-out side is known.

Every input line ends in exactly one output file; ``REASONS`` is the documented set of
rejection reasons. ``rejected.jsonl`` is published with the dataset, so it shows a line's
text PII-scrubbed, never raw: the raw line (``raw``, or ``raw_b64`` for bytes that are not
UTF-8) goes only to the quarantine dir, outside the version, when one is given.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import IO

import msgspec
import numpy as np

import modelyard
from modelyard.curation import classifier, minhash, split
from modelyard.curation.contamination import HeldOut
from modelyard.curation.dedup import Deduplicator
from modelyard.curation.index import KeyIndex, VersionIndex, index_meta, write_index_files
from modelyard.curation.prepare import (
    Prepared,
    Rejection,
    encode,
    exact_hashes,
    prepared_batches,
    reference_records,
)
from modelyard.curation.publish import PUBLISHED_FILES
from modelyard.curation.reader import RawBatch, ignored_entries, lineage_name, raw_files
from modelyard.records import FEEDBACK_PREFIX, REASONS, text_of
from modelyard.settings import CurationSettings
from modelyard.storage import (
    check_output,
    mark_output,
    private_dir,
    private_file,
    replace_dir,
    scratch_dir,
    short_hash,
    write_json,
)
from modelyard.workers import Workers

OUTPUTS = ("train", "eval", "rejected")
# Settings that change how fast or what is kept outside the dataset, never what is in it.
RUNTIME_ONLY = {"workers", "quarantine_days"}
_DECODE = msgspec.json.Decoder().decode
# A curated line from a feedback file: its "source" key, never text, which JSON escapes.
_FEEDBACK_FILE = b"/" + FEEDBACK_PREFIX.encode()
_FROM_FEEDBACK = re.compile(rb'"source":\{"file":"[^"/]*' + re.escape(_FEEDBACK_FILE))


def from_feedback(source: dict) -> bool:
    return str(source.get("file", "")).rpartition("/")[2].startswith(FEEDBACK_PREFIX)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus a digest of the sources that decide a dataset's content: curation,
    validation and the record contract and PII scrubbing they share."""
    digest = hashlib.sha256()
    root = Path(__file__).parent.parent
    shared = [root / "records.py", root / "pii.py"]
    for path in sorted([*root.glob("curation/*.py"), *root.glob("validation/*.py"), *shared]):
        digest.update(path.read_bytes())
    return f"{modelyard.__version__}+{digest.hexdigest()[:10]}"


@cache  # scores are rounded to 4 places: at most 2 x 10,001 tails
def _tail(quality_score: float | None, split_name: str) -> bytes:
    return b',"quality_score":%s,"split":"%s"}\n' % (encode(quality_score), split_name.encode())


def _line(body: bytes, quality_score: float | None, split_name: str) -> bytes:
    """A curated record's output line: its prepared body plus the judged fields."""
    return body[:-1] + _tail(quality_score, split_name)


class _Outputs:
    """The three output files, their lines counted and hashed as written (the content
    address), and the quarantine file of raw rejected lines when there is one."""

    def __init__(self, root: Path, quarantine: Path | None) -> None:
        self.handles: dict[str, IO[bytes]] = {n: (root / f"{n}.jsonl").open("wb") for n in OUTPUTS}
        self.digests = {n: hashlib.sha256() for n in OUTPUTS}
        self.pending: dict[str, list[bytes]] = {n: [] for n in OUTPUTS}
        self.lines: Counter = Counter()  # newlines written: the counts, measured
        self.reasons: Counter = Counter()
        self.feedback: Counter = Counter()  # of those, lines from feedback files
        self.feedback_reasons: Counter = Counter()
        self.quarantine = private_file(quarantine / "rejected.jsonl") if quarantine else None
        self.quarantined = 0

    def write(self, name: str, lines: list[bytes]) -> None:
        self.pending[name] += lines
        if len(self.pending[name]) >= 1024:
            self.flush(name)

    def flush(self, name: str) -> None:
        """Write and hash in blocks: one call a line was a measurable share of the run."""
        data = b"".join(self.pending[name])
        self.handles[name].write(data)
        self.digests[name].update(data)
        self.lines[name] += data.count(b"\n")
        if _FEEDBACK_FILE in data:  # a substring scan first: the regex costs ~1.6 us a line
            self.feedback[name] += len(_FROM_FEEDBACK.findall(data))
        self.pending[name] = []

    def reject(self, r: Rejection, duplicate_of: str | None = None) -> None:
        entry = {
            "reason": r.reason,
            "detail": r.detail,
            "duplicate_of": duplicate_of,
            "source": r.source,
            "id": r.record_id,
            "text": r.text,
        }
        self.reasons[r.reason] += 1
        if from_feedback(r.source):
            self.feedback_reasons[r.reason] += 1
        self.write("rejected", [encode(entry) + b"\n"])
        if self.quarantine is not None:
            raw: dict = {"source": r.source, "reason": r.reason, "id": r.record_id}
            try:
                raw["raw"] = r.raw.decode("utf-8")
            except UnicodeDecodeError:
                raw["raw_b64"] = base64.b64encode(r.raw).decode()
            self.quarantine.write(encode(raw) + b"\n")
            self.quarantined += 1

    def close(self) -> None:
        for name, handle in self.handles.items():
            self.flush(name)
            handle.close()
        if self.quarantine is not None:
            self.quarantine.close()


class _Parked:
    """Training candidates parked on disk until the whole held-out side is known: their
    final JSON lines, raw lines, contamination n-gram hashes and signature rows; in RAM
    only a few integers a record."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True)
        self.lines, self.raws, self.grams = (
            (root / name).open("w+b") for name in ("train.jsonl", "raw.bin", "grams.u64")
        )
        self.sizes: list[np.ndarray] = []  # (records, 3): line, raw and gram counts
        self.sig_rows: list[np.ndarray] = []

    def park(
        self, lines: list[bytes], raws: list[bytes], grams: minhash.Shingles, sig_rows: np.ndarray
    ) -> None:
        self.lines.write(b"".join(lines))
        self.raws.write(b"".join(raws))
        self.grams.write(grams.values.tobytes())
        lengths = [list(map(len, lines)), list(map(len, raws)), np.diff(grams.starts)]
        self.sizes.append(np.array(lengths, dtype=np.int64).T.reshape(-1, 3))
        self.sig_rows.append(sig_rows)

    def chunks(
        self, size: int
    ) -> Iterator[tuple[list[bytes], list[bytes], minhash.Shingles, np.ndarray]]:
        for handle in (self.lines, self.raws, self.grams):
            handle.seek(0)
        sizes = np.concatenate(self.sizes or [np.zeros((0, 3), np.int64)])
        rows = np.concatenate(self.sig_rows or [np.zeros(0, np.int64)])
        for start in range(0, len(rows), size):
            chunk = sizes[start : start + size]
            lines, raws = (
                _split(handle.read(int(chunk[:, k].sum())), chunk[:, k])
                for k, handle in enumerate((self.lines, self.raws))
            )
            values = np.frombuffer(self.grams.read(8 * int(chunk[:, 2].sum())), dtype=np.uint64)
            starts = np.concatenate(([0], np.cumsum(chunk[:, 2]))).astype(np.int64)
            yield lines, raws, minhash.Shingles(values, starts), rows[start : start + size]

    def close(self) -> None:
        for handle in (self.lines, self.raws, self.grams):
            handle.close()


def _text(body: bytes) -> str:
    """The (scrubbed) text of a curated record's JSON body."""
    return text_of(_DECODE(body)["messages"])


def _split(data: bytes, lengths: np.ndarray) -> list[bytes]:
    ends = np.cumsum(lengths).tolist()
    return [data[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


class Curation:
    """One run over one partition; ``run`` returns the manifest."""

    def __init__(
        self,
        settings: CurationSettings,
        workdir: Path,
        history: list[VersionIndex],
        eval_reference: Path | None,
        quarantine: Path | None,
    ) -> None:
        self.s = settings
        self.workdir = workdir
        (workdir / "index").mkdir()
        self.scratch = workdir / ".scratch"  # run state kept on disk, removed at the end
        self.out = _Outputs(workdir, quarantine)
        self.dedup = Deduplicator(
            workdir / "index",
            settings.minhash_perm,
            settings.near_dup_threshold,
            history,
            self.scratch / "dedup",
        )
        self.held_out = HeldOut(settings, self.scratch / "held_out")
        self.eval_reference = eval_reference
        self.kept_ids = KeyIndex(self.scratch / "ids")
        self.pii: Counter = Counter()
        self.histogram = np.zeros(10, dtype=np.int64)  # classifier scores, bins of 0.1
        self.parked = _Parked(self.scratch / "parked")
        self.overlapping: set[bytes] = set()  # candidate lines that overlap the held-out side
        self.input_lines = 0

    def run(self, files: list[Path], workers: Workers | None) -> dict:
        if self.eval_reference is not None:  # first: a bad reference fails before any work
            self._add_reference(self.eval_reference)
        with closing(prepared_batches(files, self.s, workers)) as batches:
            for raw, batch in batches:
                self._judge(raw, batch)
        self._check_contamination()
        self.out.close()
        leaked = self._leaked_to_train()
        self.held_out.close()
        self.dedup.signatures.close()
        self.dedup.run_ids.close()
        shutil.rmtree(self.scratch)
        exact = np.concatenate(self.dedup.run_exact or [np.zeros(0, np.uint64)])
        meta = index_meta(self.s.minhash_perm, self.s.near_dup_ngram, len(self.dedup.run_ids))
        write_index_files(self.workdir / "index", exact, meta)
        return self._summary(leaked)

    def _judge(self, raw: RawBatch, batch: Prepared) -> None:
        """Dedup, id check, classifier and split of one prepared batch, in input order."""
        self.input_lines += batch.lines
        self.pii.update(batch.pii)
        for r in batch.rejected:
            self.out.reject(r)
        if not batch.ids:
            return
        first_row = self.dedup.signatures.rows
        verdicts = self.dedup.judge(batch.ids, batch.exact, batch.sigs)
        kept = [i for i, v in enumerate(verdicts) if v is None]
        rows = np.full(len(verdicts), -1, dtype=np.int64)
        rows[kept] = np.arange(first_row, first_row + len(kept))
        for i, verdict in enumerate(verdicts):
            if verdict is not None:
                self._reject(raw, batch, i, verdict.reason, verdict.detail, verdict.of)
        kept = self._unique_ids(raw, batch, kept)
        scores: list[float | None] = [None] * len(batch.ids)
        if self.s.quality_classifier:
            kept = self._classify(raw, batch, kept, scores)
        sigs = batch.sigs
        evals = split.is_eval(sigs[kept], self.dedup.rows, self.s.eval_fraction, self.s.split_seed)
        to_eval = [i for i, e in zip(kept, evals, strict=True) if e]
        to_train = [i for i, e in zip(kept, evals, strict=True) if not e]
        self.out.write("eval", [_line(batch.bodies[i], scores[i], "eval") for i in to_eval])
        self.parked.park(
            [_line(batch.bodies[i], scores[i], "train") for i in to_train],
            [raw.line(batch.rows[i]) for i in to_train],
            batch.grams.take(to_train),
            rows[to_train],
        )
        if to_eval:
            ids = [batch.ids[i] for i in to_eval]
            self.held_out.add(ids, batch.grams.take(to_eval), sigs[to_eval], "held_out")

    def _reject(
        self,
        raw: RawBatch,
        batch: Prepared,
        i: int,
        reason: str,
        detail: str,
        of: str | None = None,
    ) -> None:
        row = batch.rows[i]
        text = _text(batch.bodies[i])
        rejection = Rejection(reason, detail, raw.line(row), raw.source(row), batch.ids[i], text)
        self.out.reject(rejection, of)

    def _unique_ids(self, raw: RawBatch, batch: Prepared, kept: list[int]) -> list[int]:
        """Kept records whose id no earlier kept record of this run uses."""
        ids = [batch.ids[i] for i in kept]
        hashes = exact_hashes(ids)
        owners = self.kept_ids.lookup(hashes)
        unique, seen = [], set()
        for n, (i, record_id, owner) in enumerate(zip(kept, ids, owners.tolist(), strict=True)):
            if owner >= 0 or record_id in seen:
                detail = f"id {record_id!r} already kept"
                self._reject(raw, batch, i, "duplicate_id", detail, record_id)
                continue
            seen.add(record_id)
            unique.append(n)
        self.kept_ids.add(hashes[unique], np.zeros(len(unique), dtype=np.int64), owners[unique])
        return [kept[n] for n in unique]

    def _classify(
        self, raw: RawBatch, batch: Prepared, kept: list[int], scores: list[float | None]
    ) -> list[int]:
        """Kept records the classifier passes; fills in their ``scores``."""
        probabilities = classifier.quality_scores([_text(batch.bodies[i]) for i in kept])
        self.histogram += np.histogram(probabilities, bins=10, range=(0.0, 1.0))[0]
        passed = []
        for i, score in zip(kept, probabilities.tolist(), strict=True):
            scores[i] = round(score, 4)
            if score < self.s.quality_threshold:
                detail = f"classifier score {score:.3f} < {self.s.quality_threshold}"
                self._reject(raw, batch, i, "quality", detail)
            else:
                passed.append(i)
        return passed

    def _add_reference(self, path: Path) -> None:
        for ids, texts in reference_records(path, self.s):
            words = minhash.word_hashes(texts)
            sigs = minhash.signatures(
                minhash.ngram_hashes(words, self.s.near_dup_ngram), self.s.minhash_perm
            )
            grams = minhash.ngram_hashes(words, self.s.contamination_ngram)
            self.held_out.add(ids, grams, sigs, "eval_reference")

    def _check_contamination(self) -> None:
        """Pass 2: parked training candidates against the complete held-out side."""
        for lines, raws, grams, rows in self.parked.chunks(self.s.batch_size):
            found = self.held_out.matches(grams, self.dedup.signatures.rows_at(rows))
            self.overlapping.update(
                line for line, f in zip(lines, found, strict=True) if f is not None
            )
            leaks = self.held_out.decide(found)
            self.out.write(
                "train", [line for line, leak in zip(lines, leaks, strict=True) if not leak]
            )
            for line, raw, leak in zip(lines, raws, leaks, strict=True):
                if leak is None:
                    continue
                record = _DECODE(line)
                text = text_of(record["messages"])
                rejection = Rejection(
                    "contamination", leak.detail, raw, record["source"], record["id"], text
                )
                self.out.reject(rejection, leak.of)
        self.parked.close()

    def _leaked_to_train(self) -> int:
        """Lines of the written ``train.jsonl`` that overlap the held-out side or the eval
        reference: the candidates the contamination criteria matched are kept aside
        whatever the filter then decided, and the file is counted against them. A
        measurement of the file, so a filter that lets a leak through shows here."""
        if not self.overlapping:
            return 0
        sizes = {len(line) for line in self.overlapping}  # most lines are skipped by size
        with (self.workdir / "train.jsonl").open("rb") as handle:
            return sum(len(line) in sizes and line in self.overlapping for line in handle)

    def _summary(self, leaked_to_train: int) -> dict:
        counts = {"input": self.input_lines, **{name: self.out.lines[name] for name in OUTPUTS}}
        feedback = {name: self.out.feedback[name] for name in OUTPUTS}
        return {
            "counts": {**counts, "by_reason": dict(sorted(self.out.reasons.items()))},
            # Records from harvested feedback files: where each ended, rejections by reason.
            "feedback": {
                "input": sum(feedback.values()),
                **feedback,
                "by_reason": dict(sorted(self.out.feedback_reasons.items())),
            },
            "pii": dict(sorted(self.pii.items())),
            "quality": {
                "classifier": self.s.quality_classifier,
                "threshold": self.s.quality_threshold,
                "histogram": {f"{k / 10:.1f}": int(n) for k, n in enumerate(self.histogram)},
            },
            "contamination": self.held_out.report(
                self.out.lines["train"] + self.out.reasons["contamination"], leaked_to_train
            ),
            "dedup": {
                "lsh_bands": self.dedup.bands,
                "lsh_rows": self.dedup.rows,
                "history_records": self.dedup.history_size,
            },
            "file_sha256": {name: d.hexdigest() for name, d in self.out.digests.items()},
            "quarantined": self.out.quarantined,
        }


def curate(
    source: Path,
    output: Path,
    settings: CurationSettings,
    *,
    partition: str | None = None,
    eval_reference: Path | None = None,
    history: list[VersionIndex] | None = None,
    history_versions: list[str] | None = None,
    quarantine: Path | None = None,
    workers: Workers | None = None,
) -> dict:
    """Curate ``source`` (a partition dir or one file) into ``output``; returns the manifest.

    ``output`` is replaced only when it is new, empty or an earlier curation output, and
    never when it overlaps an input (``storage.check_output``); a failed run leaves it as it
    was and removes its scratch. ``history`` holds the indexes of earlier published versions
    to dedup against. Raw rejected lines go to ``<quarantine>/<version>/rejected.jsonl``
    (0600, its dirs 0700) when ``quarantine`` is given, and nowhere otherwise. ``workers``
    shares worker processes with a later stage (the CLI's gate).

    The version id is a content address: it hashes the three output files with the settings
    and the partition, so the same input, history and config give the same version.
    """
    files = raw_files(source)
    inputs = [source, *files] + ([eval_reference] if eval_reference is not None else [])
    output = check_output(output, inputs, PUBLISHED_FILES)
    if eval_reference is not None and not eval_reference.is_file():
        if eval_reference.exists():
            raise ValueError(f"eval reference {eval_reference} is not a file (a .jsonl[.gz])")
        raise FileNotFoundError(f"eval reference not found: {eval_reference}")
    workdir = scratch_dir(output, every_name=True, keep=inputs)  # any dead run's, beside it
    held = None
    if quarantine is not None:
        run = private_dir(quarantine) / "run"
        held = scratch_dir(run, every_name=True, private=True, keep=inputs)
    try:
        curation = Curation(settings, workdir, history or [], eval_reference, held)
        summary = curation.run(files, workers)
        manifest = _manifest(summary, settings, partition, files, eval_reference, history_versions)
        manifest["ignored_files"] = ignored_entries(source)
        mark_output(workdir, manifest["version"])
        write_json(workdir / "manifest.json", manifest)
        replace_dir(workdir, output)
        if held is not None:
            replace_dir(held, quarantine / manifest["version"])
    except BaseException:  # SIGTERM (raised as SystemExit) and KeyboardInterrupt too
        for scratch in (workdir, held):
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        raise
    return manifest


def content_address(files: dict[str, str], settings: dict, partition: str | None) -> str:
    """A version's content hash: the sha256 of its output files (``OUTPUTS``) with the
    settings and the partition that made them. A reader re-derives it to tell published
    files from files edited afterwards (``tasks.snapshots``)."""
    content = {"files": files, "settings": settings, "partition": partition}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _manifest(
    summary: dict,
    settings: CurationSettings,
    partition: str | None,
    files: list[Path],
    eval_reference: Path | None,
    history_versions: list[str] | None,
) -> dict:
    counts = summary["counts"]
    if counts["input"] != counts["train"] + counts["eval"] + counts["rejected"]:
        raise RuntimeError(f"curation lost lines, refusing to publish: {counts}")
    content = {
        "files": summary.pop("file_sha256"),
        "settings": settings.model_dump(mode="json", exclude=RUNTIME_ONLY),
        "partition": partition,
    }
    content_hash = content_address(**content)
    return {
        "version": f"ds-{short_hash(content_hash)}",
        "content_hash": content_hash,
        "partition": partition,
        **summary,
        "rejection_reasons": REASONS,
        "history_versions": history_versions or [],
        "source_files": [{"file": lineage_name(p), "bytes": p.stat().st_size} for p in files],
        "eval_reference": str(eval_reference) if eval_reference else None,
        "settings": content["settings"],
        "code_version": code_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "gx": None,
    }
