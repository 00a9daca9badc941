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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelyard.settings import Settings
from modelyard.storage import read_json, read_text, short_hash, storage_path, write_bytes

SUITES_DIR = "eval-suites"
METRICS_DIR = Path(__file__).parent / "metrics"


@dataclass(frozen=True)
class Suite:
    version: str
    records_path: str
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in read_text(self.records_path).splitlines() if line]


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
    current = storage_path(settings, SUITES_DIR, "CURRENT")
    if not current.exists():
        return None
    return load_suite(settings, current.read_text(encoding="utf-8").strip())


def load_suite(settings: Settings, version: str) -> Suite:
    base = storage_path(settings, SUITES_DIR, version)
    meta = read_json(base / "suite.json")
    return Suite(
        version=version,
        records_path=str(base / "records.jsonl"),
        config=meta["config"],
        meta=meta,
    )


def held_out_records(settings: Settings) -> tuple[list[dict], list[str]]:
    """Every published dataset version's eval.jsonl, deduplicated by record id. A version is
    published once its manifest (written last) exists; a prefix without one and a publisher's
    scratch (``.ds-....tmp``) are skipped."""
    by_id: dict[str, dict] = {}
    sources = []
    for manifest in sorted(storage_path(settings, "datasets").glob("*/manifest.json"), key=str):
        version_dir = manifest.parent
        if version_dir.name.startswith("."):  # scratch: not published (yet)
            continue
        sources.append(version_dir.name)
        text = (version_dir / "eval.jsonl").read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                record = json.loads(line)
                if not isinstance(record, dict) or "id" not in record:
                    raise ValueError(f"{version_dir}/eval.jsonl line {number}: a record without id")
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
    version = f"suite-{short_hash(digest)}"
    base = storage_path(settings, SUITES_DIR, version)
    previous = current_suite(settings)
    if not (base / "suite.json").exists():
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
        # suite.json last: its presence means the records are complete.
        write_bytes(base / "records.jsonl", body)
        write_bytes(base / "suite.json", json.dumps(meta, indent=2).encode())
    write_bytes(storage_path(settings, SUITES_DIR, "CURRENT"), version.encode())
    return load_suite(settings, version)


def ensure_suite(settings: Settings) -> Suite:
    """The current suite, freezing an initial one from published held-out records when none."""
    return current_suite(settings) or freeze_suite(settings, "initial suite")
