"""Pinned, versioned eval suites.

A suite is the held-out records plus the metric and generation config, addressed by a content
hash, so a score that names its suite version names exactly what it was computed on. Suites
change only deliberately (:func:`freeze_suite` with a reason); ``eval-suites/CURRENT`` says which
one new candidates are scored on.

Layout under ``settings.storage``::

    eval-suites/<version>/records.jsonl   the held-out records, sorted by id
    eval-suites/<version>/suite.json      {version, config, reason, sources, parent, ...}
    eval-suites/CURRENT                   the current version
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from modelyard.settings import Settings

SUITES_DIR = "eval-suites"
METRICS_DIR = Path(__file__).parent / "metrics"


@dataclass(frozen=True)
class Suite:
    version: str
    records_path: str
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict]:
        with fsspec.open(self.records_path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def _fs(settings: Settings) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = fsspec.core.url_to_fs(settings.storage)
    return fs, root


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if "file" in fs.protocol else fs.unstrip_protocol(path)


def _write(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Atomic on local disks (temp + rename); object stores make each put atomic themselves."""
    if "file" not in fs.protocol:
        fs.pipe_file(path, data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def suite_config(settings: Settings) -> dict[str, Any]:
    """The metric and generation config a new suite freezes, from ``settings.gate``."""
    gate = settings.gate
    return {
        "metrics": list(gate.suite_metrics),
        "metric_args": (
            {"format_validity": {"schema": gate.json_schema}} if gate.json_schema else {}
        ),
        "generation": {"max_new_tokens": gate.max_new_tokens, "batch_size": gate.eval_batch_size},
        "loss": True,
    }


def metric_module_path(name_or_path: str) -> str:
    """A shipped metric name (``rouge_l``) or a path to a task's own metric module."""
    shipped = METRICS_DIR / name_or_path
    if shipped.is_dir():
        return str(shipped)
    if Path(name_or_path).exists():
        return name_or_path
    raise ValueError(
        f"unknown metric module {name_or_path!r}: not shipped in {METRICS_DIR} "
        "and not an existing path"
    )


def current_suite(settings: Settings) -> Suite | None:
    fs, root = _fs(settings)
    current = posixpath.join(root, SUITES_DIR, "CURRENT")
    if not fs.exists(current):
        return None
    return load_suite(settings, fs.cat_file(current).decode().strip())


def load_suite(settings: Settings, version: str) -> Suite:
    fs, root = _fs(settings)
    base = posixpath.join(root, SUITES_DIR, version)
    meta = json.loads(fs.cat_file(posixpath.join(base, "suite.json")))
    return Suite(
        version=version,
        records_path=_url(fs, posixpath.join(base, "records.jsonl")),
        config=meta["config"],
        meta=meta,
    )


def held_out_records(settings: Settings) -> tuple[list[dict], list[str]]:
    """Every published dataset version's eval.jsonl, deduplicated by record id."""
    fs, root = _fs(settings)
    by_id: dict[str, dict] = {}
    sources = []
    for path in sorted(fs.glob(posixpath.join(root, "datasets", "*", "eval.jsonl"))):
        sources.append(posixpath.basename(posixpath.dirname(path)))
        for line in fs.cat_file(path).decode("utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                by_id.setdefault(record["id"], record)
    return [by_id[k] for k in sorted(by_id)], sources


def freeze_suite(settings: Settings, reason: str) -> Suite:
    """Build a suite from the accumulated held-out records and make it CURRENT.

    Freezing identical records and config again yields the same version (content address);
    it still becomes CURRENT and the new reason is recorded only if the version is new.
    """
    if not reason or not reason.strip():
        raise ValueError("freezing an eval suite needs a --reason")
    records, sources = held_out_records(settings)
    if not records:
        raise ValueError(
            f"no held-out records under {settings.storage}/datasets/*/eval.jsonl: "
            "publish a dataset first"
        )
    config = suite_config(settings)
    body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
    digest = hashlib.sha256(body + json.dumps(config, sort_keys=True).encode()).hexdigest()
    version = f"suite-{digest[:12]}"
    fs, root = _fs(settings)
    base = posixpath.join(root, SUITES_DIR, version)
    previous = current_suite(settings)
    if not fs.exists(posixpath.join(base, "suite.json")):
        meta = {
            "version": version,
            "content_hash": digest,
            "config": config,
            "reason": reason,
            "record_count": len(records),
            "sources": sources,
            "parent": previous.version if previous else None,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write(fs, posixpath.join(base, "records.jsonl"), body)
        _write(fs, posixpath.join(base, "suite.json"), json.dumps(meta, indent=2).encode())
    _write(fs, posixpath.join(root, SUITES_DIR, "CURRENT"), version.encode())
    return load_suite(settings, version)


def ensure_suite(settings: Settings) -> Suite:
    """The current suite, freezing an initial one from published held-out records when none."""
    return current_suite(settings) or freeze_suite(settings, "initial suite")
