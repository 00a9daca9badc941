"""Production feedback through a real curation run: the issue's done-when, on real components.

Traffic is written by the gateway's own log writer into a real SQLite request log; the
harvest writes the date's raw feedback file; ``curate_dataset``'s own task functions curate,
gate (Great Expectations) and publish it with that date's other raw data, against the
history and the pinned eval suite frozen from the previous date's version.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from modelyard.evaluation.suite import freeze_suite
from modelyard.feedback.harvest import harvest, report_path
from modelyard.feedback.ordering import harvest_pending
from modelyard.sampledata import INSTRUCTION, write_partition
from modelyard.tasks.curation import curate_partition, publish_partition, validate_partition
from tests.feedback.traffic import at, interval, rate, request, serve

D0, D1 = "2026-10-01", "2026-10-02"
EMAIL, PHONE = "mira.okafor@example.com", "+1 415 555 0134"
PII_PROMPT = (
    f"{INSTRUCTION}\nOur new colleague Mira Okafor, reachable at {EMAIL} or {PHONE}, has "
    "been working as an architect in Nairobi since the spring."
)
PII_ANSWER = json.dumps({"name": "Mira Okafor", "job": "architect", "city": "Nairobi"})
CORRECTED_PROMPT = f"{INSTRUCTION}\nAfter years at sea, Tomasz Nowak now runs a bakery in Gdansk."
SERVED_WRONG = json.dumps({"name": "Tomasz Nowak", "job": "sailor", "city": "at sea"})
CORRECTION = json.dumps({"name": "Tomasz Nowak", "job": "baker", "city": "Gdansk"})
DOWN_PROMPT = f"{INSTRUCTION}\nLeilani Kahale teaches chemistry to teenagers in Honolulu."
DOWN_ANSWER = "NEVER-TRAIN this answer was rated down"
UNSTORED_PROMPT = f"{INSTRUCTION}\nUNSTORED-SECRET Aiko Tanaka paints murals in Sapporo."


def _curate(settings, day: str) -> tuple[dict, dict, Path]:
    curated = curate_partition(day, settings)
    assert curated["status"] == "curated", curated
    validate_partition(curated["staging_dir"], settings)
    published = publish_partition(curated["staging_dir"], settings)
    path = Path(published["path"])
    return published, json.loads((path / "manifest.json").read_text()), path


def _records(path: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (path / f"{name}.jsonl").read_text().splitlines()]


def _files(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def test_feedback_is_curated_scrubbed_decontaminated_and_harvested_idempotently(store):
    settings = store
    raw = settings.storage_path / "raw"
    write_partition(raw, date.fromisoformat(D0), n=60)
    _curate(settings, D0)
    suite = freeze_suite(settings, "pinned before feedback")
    pasted = suite.records()[0]  # a user pastes an eval-suite prompt into production

    serve(
        settings,
        [
            request("chatcmpl-pii", at(D1, 9), PII_PROMPT, PII_ANSWER),
            rate("chatcmpl-pii", at(D1, 9.1), 1),
            request("chatcmpl-fix", at(D1, 10), CORRECTED_PROMPT, SERVED_WRONG, alias="canary"),
            rate("chatcmpl-fix", at(D1, 10.1), -1, CORRECTION),
            request("chatcmpl-down", at(D1, 11), DOWN_PROMPT, DOWN_ANSWER, version="2"),
            rate("chatcmpl-down", at(D1, 11.1), -1),
            request("chatcmpl-nostore", at(D1, 12), UNSTORED_PROMPT, PII_ANSWER, stored=False),
            rate("chatcmpl-nostore", at(D1, 12.1), 1),
            request("chatcmpl-eval", at(D1, 13), pasted["prompt"], '{"name": "?"}'),
            rate("chatcmpl-eval", at(D1, 13.1), 1),
        ],
    )
    write_partition(raw, date.fromisoformat(D1), n=60)  # the date's other raw data
    since, until = interval(D1)
    assert "waiting for harvest_feedback" in harvest_pending(settings, D1, since, until)

    report = harvest(settings, D1, since, until)
    assert harvest_pending(settings, D1, since, until) is None
    assert report["records"] == 3 and report["changed"]
    assert {k: v for k, v in report["outcomes"].items() if v} == {
        "thumbs_up": 2,
        "correction": 1,
        "rated_down": 1,
        "not_stored": 1,
    }
    feedback_file = raw / report["file"]
    text = feedback_file.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [r["id"] for r in lines] == ["chatcmpl-pii", "chatcmpl-fix", "chatcmpl-eval"]
    fix = lines[1]
    assert fix["feedback"] == {
        "request_id": "chatcmpl-fix",
        "model": "modelyard-assistant",
        "version": "1",
        "alias": "canary",
        "rating": -1,
        "kind": "correction",
        "requested_at": "2026-10-02T10:00:00+00:00",
        "rated_at": "2026-10-02T10:06:00+00:00",
    }
    assert fix["messages"][-1] == {"role": "assistant", "content": CORRECTION}
    for absent in (EMAIL, PHONE, SERVED_WRONG, DOWN_ANSWER, "UNSTORED-SECRET", "nostore"):
        assert absent not in text

    published, manifest, version_dir = _curate(settings, D1)
    assert manifest["feedback"] == {
        "input": 3,
        "train": manifest["feedback"]["train"],
        "eval": 2 - manifest["feedback"]["train"],
        "rejected": 1,
        "by_reason": {"contamination": 1},
    }
    rejected = {r["id"]: r for r in _records(version_dir, "rejected")}
    assert rejected["chatcmpl-eval"]["reason"] == "contamination"
    assert "eval_reference" in rejected["chatcmpl-eval"]["detail"]
    kept = {r["id"]: r for r in _records(version_dir, "train") + _records(version_dir, "eval")}
    assert kept["chatcmpl-fix"]["completion"] == CORRECTION
    pii = kept["chatcmpl-pii"]
    assert "<EMAIL>" in pii["prompt"] and "<PHONE>" in pii["prompt"]
    assert pii["source"] == {"file": report["file"], "line": 1}
    dataset = "".join((version_dir / f"{n}.jsonl").read_text() for n in ("train", "eval"))
    dataset += (version_dir / "rejected.jsonl").read_text()
    for absent in (EMAIL, PHONE, DOWN_ANSWER, SERVED_WRONG, "UNSTORED-SECRET"):
        assert absent not in dataset
    assert manifest["counts"]["input"] == 60 + 60 // 40 + 3

    # Re-running the harvest for the date changes nothing: same files, same dataset version.
    before = _files(raw / D1), report_path(settings, D1).stat().st_mtime_ns
    again = harvest(settings, D1, since, until)
    assert again["changed"] is False and again["file"] == report["file"]
    assert (_files(raw / D1), report_path(settings, D1).stat().st_mtime_ns) == before
    republished, _, _ = _curate(settings, D1)
    assert republished["version"] == published["version"] and republished["new"] is False
