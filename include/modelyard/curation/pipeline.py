"""Raw partition -> ``train.jsonl``, ``eval.jsonl``, ``rejected.jsonl``, ``manifest.json``.

Two streaming passes in batches. Pass 1 parses, normalises, scrubs PII, applies the
heuristics, dedups (exact and MinHash-LSH, against this run and earlier versions), scores
quality, splits, writes the held-out side and parks training candidates on disk. Pass 2
checks those candidates for contamination once the whole held-out side is known.

Every input line ends in exactly one output file; ``REASONS`` is the documented set of
rejection reasons. A rejected line keeps its raw text; a line that is not UTF-8 is kept as
``raw`` (decoded with U+FFFD replacements, for reading) plus ``raw_b64`` (the exact bytes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO

import numpy as np

import modelyard
from modelyard.curation import classifier, minhash, split
from modelyard.curation.contamination import HeldOut
from modelyard.curation.dedup import Deduplicator
from modelyard.curation.index import KeyIndex, VersionIndex, index_meta, write_index_files
from modelyard.curation.prepare import Prepared, exact_hashes, prepared_batches
from modelyard.curation.reader import batched, lineage_name, raw_files
from modelyard.curation.records import Record
from modelyard.curation.storage import replace_dir, scratch_dir, write_json
from modelyard.settings import CurationSettings

REASONS = {
    "malformed": "not UTF-8, or not JSON",
    "schema": "JSON, but none of the accepted shapes (or an empty prompt)",
    "quality": "failed a heuristic (length, repetition, symbols, trivial answer) or the classifier",
    "duplicate": "same normalised text as an earlier record (duplicate_of names it)",
    "near_duplicate": "MinHash-LSH near-duplicate of an earlier record (duplicate_of names it)",
    "duplicate_id": "its id is already used by a different kept record of this partition",
    "contamination": "training record overlapping the held-out side or the eval suite",
}
OUTPUTS = ("train", "eval", "rejected")
RUNTIME_ONLY = {"workers"}  # settings that change how fast, never what: not in the version


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus a digest of the curation and validation sources."""
    digest = hashlib.sha256()
    root = Path(__file__).parent.parent
    for path in sorted([*root.glob("curation/*.py"), *root.glob("validation/*.py")]):
        digest.update(path.read_bytes())
    return f"{modelyard.__version__}+{digest.hexdigest()[:10]}"


def _dump(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


class _Outputs:
    """The three output files, counted and hashed as written (the content address)."""

    def __init__(self, root: Path) -> None:
        self.handles: dict[str, IO[bytes]] = {n: (root / f"{n}.jsonl").open("wb") for n in OUTPUTS}
        self.digests = {n: hashlib.sha256() for n in OUTPUTS}
        self.counts: Counter = Counter()
        self.reasons: Counter = Counter()

    def write(self, name: str, data: bytes) -> None:
        self.handles[name].write(data)
        self.digests[name].update(data)
        self.counts[name] += 1

    def keep(self, record: dict) -> None:
        self.write(record["split"], _dump(record))

    def reject(
        self,
        reason: str,
        detail: str,
        raw: str | bytes,
        source: dict,
        record_id: str | None = None,
        duplicate_of: str | None = None,
    ) -> None:
        entry = {"reason": reason, "detail": detail, "duplicate_of": duplicate_of, "source": source}
        entry["id"] = record_id
        if isinstance(raw, bytes):
            entry["raw"] = raw.decode("utf-8", errors="replace")
            entry["raw_b64"] = base64.b64encode(raw).decode()
        else:
            entry["raw"] = raw
        self.reasons[reason] += 1
        self.write("rejected", _dump(entry))

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def _texts_of(records: list[dict]) -> list[str]:
    return ["\n".join(m["content"] for m in r["messages"]) for r in records]


def _read_reference(path: Path) -> Iterator[dict]:
    """Curated records of the pinned eval suite (one JSON object a line)."""
    with path.open(encoding="utf-8") as handle:
        yield from (json.loads(line) for line in handle if line.strip())


class _Parked:
    """Training candidates parked on disk until the whole held-out side is known: their
    final JSON lines, raw lines, contamination n-gram hashes and signature rows."""

    def __init__(self, root: Path) -> None:
        root.mkdir()
        self.root = root
        self.records, self.raws, self.grams = (
            (root / name).open("w+b") for name in ("records.jsonl", "raw.jsonl", "grams.u64")
        )
        self.gram_counts: list[np.ndarray] = []
        self.sig_rows: list[int] = []

    def park(
        self, pending: list[tuple[Record, str]], grams: minhash.Shingles, sig_rows: list[int]
    ) -> None:
        for record, raw in pending:
            self.records.write(_dump(record.to_json()))
            self.raws.write(json.dumps(raw).encode() + b"\n")
        self.grams.write(grams.values.tobytes())
        self.gram_counts.append(np.diff(grams.starts))
        self.sig_rows += sig_rows

    def chunks(
        self, size: int
    ) -> Iterator[tuple[list[bytes], list[bytes], minhash.Shingles, np.ndarray]]:
        for handle in (self.records, self.raws, self.grams):
            handle.seek(0)
        counts = np.concatenate(self.gram_counts or [np.zeros(0, np.int64)])
        rows = np.array(self.sig_rows, dtype=np.int64)
        for start in range(0, len(rows), size):
            chunk = counts[start : start + size]
            values = np.frombuffer(self.grams.read(8 * int(chunk.sum())), dtype=np.uint64)
            grams = minhash.Shingles(
                values, np.concatenate(([0], np.cumsum(chunk))).astype(np.int64)
            )
            lines = [self.records.readline() for _ in chunk]
            raws = [self.raws.readline() for _ in chunk]
            yield lines, raws, grams, rows[start : start + size]

    def remove(self) -> None:
        for handle in (self.records, self.raws, self.grams):
            handle.close()
        shutil.rmtree(self.root)


class Curation:
    """One run over one partition; ``run`` returns the manifest."""

    def __init__(
        self,
        settings: CurationSettings,
        workdir: Path,
        history: list[VersionIndex],
        eval_reference: Path | None,
    ) -> None:
        self.s = settings
        self.workdir = workdir
        (workdir / "index").mkdir()
        self.out = _Outputs(workdir)
        self.dedup = Deduplicator(
            workdir / "index" / "minhash.u32",
            settings.minhash_perm,
            settings.near_dup_threshold,
            history,
        )
        self.held_out = HeldOut(settings)
        self.eval_reference = eval_reference
        self.kept_ids = KeyIndex()
        self.pii: Counter = Counter()
        self.histogram = np.zeros(10, dtype=np.int64)  # classifier scores, bins of 0.1
        self.parked = _Parked(workdir / ".parked")
        self.input_lines = 0

    def run(self, files: list[Path]) -> dict:
        for batch in prepared_batches(files, self.s):
            self._judge(batch)
        if self.eval_reference is not None:
            self._add_reference(self.eval_reference)
        self._check_contamination()
        self.out.close()
        self.dedup.signatures.close()
        run_ids = self.dedup.ids[self.dedup.history_size :]
        exact = np.concatenate(self.dedup.run_exact or [np.zeros(0, np.uint64)])
        meta = index_meta(self.s.minhash_perm, self.s.near_dup_ngram, len(run_ids))
        write_index_files(self.workdir / "index", run_ids, exact, meta)
        return self._summary()

    def _judge(self, batch: Prepared) -> None:
        """Dedup, id check, classifier and split of one prepared batch, in input order."""
        self.input_lines += batch.lines
        self.pii.update(batch.pii)
        for r in batch.rejected:
            self.out.reject(r.reason, r.detail, r.raw, r.source, r.record_id)
        pending = list(zip(batch.records, batch.raws, strict=True))
        if not pending:
            return
        first_row = self.dedup.signatures.rows
        verdicts = self.dedup.judge([r.id for r in batch.records], batch.exact, batch.sigs)
        kept = [i for i, v in enumerate(verdicts) if v is None]
        rows = dict(zip(kept, range(first_row, first_row + len(kept)), strict=True))
        for (record, raw), verdict in zip(pending, verdicts, strict=True):
            if verdict is not None:
                self.out.reject(
                    verdict.reason, verdict.detail, raw, record.source, record.id, verdict.of
                )
        kept = self._unique_ids(pending, kept)
        if self.s.quality_classifier:
            kept = self._classify(pending, kept)
        sigs = batch.sigs
        evals = split.is_eval(sigs[kept], self.dedup.rows, self.s.eval_fraction, self.s.split_seed)
        to_eval = [i for i, e in zip(kept, evals, strict=True) if e]
        to_train = [i for i, e in zip(kept, evals, strict=True) if not e]
        for i in to_eval:
            pending[i][0].split = "eval"
            self.out.keep(pending[i][0].to_json())
        for i in to_train:
            pending[i][0].split = "train"
        self.parked.park(
            [pending[i] for i in to_train], batch.grams.take(to_train), [rows[i] for i in to_train]
        )
        if to_eval:
            ids = [pending[i][0].id for i in to_eval]
            self.held_out.add(ids, batch.grams.take(to_eval), sigs[to_eval], "held_out")

    def _unique_ids(self, pending: list[tuple[Record, str]], kept: list[int]) -> list[int]:
        """Kept records whose id no earlier kept record of this run uses."""
        ids = [pending[i][0].id for i in kept]
        owners = self.kept_ids.lookup(exact_hashes(ids))
        unique, seen = [], set()
        for i, record_id, owner in zip(kept, ids, owners, strict=True):
            if owner >= 0 or record_id in seen:
                record, raw = pending[i]
                self.out.reject(
                    "duplicate_id",
                    f"id {record_id!r} already kept",
                    raw,
                    record.source,
                    record_id,
                    record_id,
                )
                continue
            seen.add(record_id)
            unique.append(i)
        self.kept_ids.add(exact_hashes(sorted(seen)), np.zeros(len(seen), dtype=np.int64))
        return unique

    def _classify(self, pending: list[tuple[Record, str]], kept: list[int]) -> list[int]:
        scores = classifier.quality_scores([pending[i][0].text for i in kept])
        self.histogram += np.histogram(scores, bins=10, range=(0.0, 1.0))[0]
        passed = []
        for i, score in zip(kept, scores.tolist(), strict=True):
            record, raw = pending[i]
            record.quality_score = round(score, 4)
            if score < self.s.quality_threshold:
                detail = f"classifier score {score:.3f} < {self.s.quality_threshold}"
                self.out.reject("quality", detail, raw, record.source, record.id)
            else:
                passed.append(i)
        return passed

    def _add_reference(self, path: Path) -> None:
        for chunk in batched(_read_reference(path), self.s.batch_size):
            words = minhash.word_hashes(_texts_of(chunk))
            sigs = minhash.signatures(
                minhash.ngram_hashes(words, self.s.near_dup_ngram), self.s.minhash_perm
            )
            grams = minhash.ngram_hashes(words, self.s.contamination_ngram)
            self.held_out.add([str(r["id"]) for r in chunk], grams, sigs, "eval_reference")

    def _check_contamination(self) -> None:
        """Pass 2: parked training candidates against the complete held-out side."""
        for lines, raws, grams, rows in self.parked.chunks(self.s.batch_size):
            leaks = self.held_out.check(grams, self.dedup.signatures.rows_at(rows))
            for line, raw, leak in zip(lines, raws, leaks, strict=True):
                if leak is None:
                    self.out.write("train", line)
                    continue
                record = json.loads(line)
                self.out.reject(
                    "contamination",
                    leak.detail,
                    json.loads(raw),
                    record["source"],
                    record["id"],
                    leak.of,
                )
        self.parked.remove()

    def _summary(self) -> dict:
        counts = {"input": self.input_lines, **{name: self.out.counts[name] for name in OUTPUTS}}
        return {
            "counts": {**counts, "by_reason": dict(sorted(self.out.reasons.items()))},
            "pii": dict(sorted(self.pii.items())),
            "quality": {
                "classifier": self.s.quality_classifier,
                "threshold": self.s.quality_threshold,
                "histogram": {f"{k / 10:.1f}": int(n) for k, n in enumerate(self.histogram)},
            },
            "contamination": self.held_out.report(
                self.out.counts["train"] + self.out.reasons["contamination"]
            ),
            "dedup": {
                "lsh_bands": self.dedup.bands,
                "lsh_rows": self.dedup.rows,
                "history_records": self.dedup.history_size,
            },
            "file_sha256": {name: d.hexdigest() for name, d in self.out.digests.items()},
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
) -> dict:
    """Curate ``source`` (a partition dir or one file) into ``output``; returns the manifest.

    ``history`` holds the indexes of earlier published versions to dedup against. The
    version id is a content address: it hashes the three output files with the settings and
    the partition, so the same input, history and config give the same version.
    """
    files = raw_files(source)
    if eval_reference is not None and not eval_reference.is_file():
        raise FileNotFoundError(f"eval reference not found: {eval_reference}")
    workdir = scratch_dir(output)
    summary = Curation(settings, workdir, history or [], eval_reference).run(files)
    counts = summary["counts"]
    if counts["input"] != counts["train"] + counts["eval"] + counts["rejected"]:
        raise RuntimeError(f"curation lost lines, refusing to publish: {counts}")
    content = {
        "files": summary.pop("file_sha256"),
        "settings": settings.model_dump(mode="json", exclude=RUNTIME_ONLY),
        "partition": partition,
    }
    content_hash = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    manifest = {
        "version": f"ds-{content_hash[:12]}",
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
    write_json(workdir / "manifest.json", manifest)
    replace_dir(workdir, output)
    return manifest
