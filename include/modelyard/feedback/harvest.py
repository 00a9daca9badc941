"""The daily feedback harvest: one data interval of the request log -> one raw file.

Layout under the storage root::

    raw/<ds>/feedback-<sha256[:16]>.jsonl   harvested records, curated with the date's raw data
    feedback/<ds>.json                      the harvest report: counts by outcome, the policy

A record is one rated answer in curation's ``messages`` shape (the request's turns, system
prompt included, then the answer to learn), its ``id`` the response id, and ``feedback`` its
lineage: request id, model, served version and alias, rating, kind, when it was asked and
rated. Texts are the request log's, PII-scrubbed by the gateway (curation scrubs again). The
curated record keeps the response id as its ``id`` and its ``source`` (file, line) points here.
A user who changes their rating on a later day is counted on that day with the new rating; a
record harvested before stays in the versions already published (they are immutable).

Idempotent per date: the interval is read by feedback time (``RequestLogReader.
latest_feedback``), so an interval that has ended reads the same rows; lines are sorted; the
file is named by its content and written to a temporary name, then renamed. A re-run that
finds the same content touches nothing, so curation publishes the same dataset version. New
content is in place before the date's old feedback file is removed: a crash in between leaves
both, and curation's exact dedup keeps one copy of each record.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from modelyard.feedback.policy import COUNTED, HARVESTED, decide
from modelyard.records import FEEDBACK_PREFIX
from modelyard.serving.logreader import FeedbackRecord, RequestLogReader
from modelyard.serving.requestlog import log_url
from modelyard.settings import Settings
from modelyard.storage import StoragePath, remove_tree, storage_path, write_bytes

REPORTS = "feedback"


def report_path(settings: Settings, ds: str) -> StoragePath:
    return storage_path(settings, REPORTS, f"{ds}.json")


def open_log(settings: Settings) -> RequestLogReader | None:
    """The request log, or None when the gateway never wrote one (an SQLite file that does
    not exist is not created: a harvest must not leave an empty log behind)."""
    url = sa.make_url(log_url(settings))
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return None
    return RequestLogReader(str(url), settings.registered_model)


def read_interval(
    settings: Settings, since: datetime, until: datetime
) -> tuple[list[FeedbackRecord], int]:
    """The latest feedback per response that arrived in ``[since, until)``, and how many
    rated responses have no request row to harvest from (counted, so none goes unsaid)."""
    reader = open_log(settings)
    if reader is None:
        return [], 0
    try:
        return (
            reader.latest_feedback(since=since, until=until),
            reader.unlogged_feedback(since=since, until=until),
        )
    finally:
        reader.close()


def fingerprint(rated: list[FeedbackRecord]) -> str:
    """Which feedback events a harvest saw: the latest event id of each rated response."""
    events = sorted(f"{fb.response_id}:{fb.id}" for fb in rated)
    return hashlib.sha256("\n".join(events).encode()).hexdigest()[:16]


def _line(fb: FeedbackRecord, kind: str, completion: str) -> bytes:
    turns = [{"role": m.get("role"), "content": m.get("content")} for m in fb.prompt or []]
    record = {
        "id": fb.response_id,
        "messages": [*turns, {"role": "assistant", "content": completion}],
        "feedback": {
            "request_id": fb.response_id,
            "model": fb.model,
            "version": fb.version,
            "alias": fb.alias,
            "rating": fb.rating,
            "kind": kind,
            "requested_at": fb.request_time.isoformat(),
            "rated_at": fb.time.isoformat(),
        },
    }
    return (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def _write_if_changed(path: StoragePath, data: bytes) -> bool:
    """Write ``data`` whole (``storage.write_bytes``) unless ``path`` already holds it."""
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes(path, data)
    return True


def _replace_feedback_file(raw_dir: StoragePath, body: bytes) -> tuple[str | None, bool]:
    """The date's one feedback file holds ``body`` (none if empty); (its name, changed)."""
    old = sorted(raw_dir.glob(f"{FEEDBACK_PREFIX}*.jsonl")) if raw_dir.is_dir() else []
    name = None
    changed = False
    if body:
        name = f"{FEEDBACK_PREFIX}{hashlib.sha256(body).hexdigest()[:16]}.jsonl"
        changed = _write_if_changed(raw_dir / name, body)
    for path in old:
        if path.name != name:
            remove_tree(path)
            changed = True
    if raw_dir.is_dir() and not any(raw_dir.iterdir()):
        remove_tree(raw_dir)  # a date that only had feedback, and now has none, has no partition
    return name, changed


def harvest(settings: Settings, ds: str, since: datetime, until: datetime) -> dict:
    """Harvest the feedback that arrived in ``[since, until)`` into ``raw/<ds>/``; the report
    (also written to ``feedback/<ds>.json``, last: it marks the date as harvested)."""
    if until <= since:
        raise ValueError(f"empty harvest interval: {since.isoformat()} .. {until.isoformat()}")
    outcomes: Counter = Counter({k: 0 for k in (*HARVESTED, *COUNTED)})
    lines = []
    rated, outcomes["no_request_logged"] = read_interval(settings, since, until)
    for fb in sorted(rated, key=lambda f: (f.time, f.response_id)):
        decision = decide(fb, settings.feedback)
        outcomes[decision.outcome] += 1
        if decision.completion is not None:
            lines.append(_line(fb, decision.outcome, decision.completion))
    body = b"".join(lines)
    name, changed = _replace_feedback_file(storage_path(settings, "raw", ds), body)
    report = {
        "partition": ds,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "model": settings.registered_model,
        "policy": settings.feedback.model_dump(mode="json"),
        "file": f"{ds}/{name}" if name else None,
        "sha256": hashlib.sha256(body).hexdigest() if name else None,
        "records": len(lines),
        "outcomes": dict(outcomes),
        "feedback_fingerprint": fingerprint(rated),
        "counted_only": COUNTED,
    }
    data = (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8")
    changed |= _write_if_changed(report_path(settings, ds), data)
    return {**report, "changed": changed}
