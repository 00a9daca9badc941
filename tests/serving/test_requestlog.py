"""The request log on SQLite and PostgreSQL: what the writer stores, what the reader returns
(the contract canary analysis reads), and what happens when the writer cannot keep up."""

from __future__ import annotations

import json
import os
import time

import pytest
from evaluation.helpers import publish_dataset

from modelyard.evaluation.suite import freeze_suite
from modelyard.serving.formatcheck import format_check
from modelyard.serving.logreader import RequestLogReader
from modelyard.serving.requestlog import FeedbackEntry, RequestEntry, RequestLogWriter
from modelyard.serving.worker import Worker

VALID = json.dumps({"name": "Ines", "job": "pilot", "city": "Rome"})
MISSING_CITY = json.dumps({"name": "Ines", "job": "pilot"})
T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serving' / 'requests.db'}"
    return request.getfixturevalue("postgres_url")


def entry(i: int, alias: str, version: str, completion: str | None, **kw) -> RequestEntry:
    fields = {
        "id": f"r{i}",
        "ts": T0 + i,
        "model": "modelyard-assistant",
        "alias": alias,
        "version": version,
        "user_hash": f"u{i % 3}",
        "latency_ms": 10.0 + i,
        "status": 200 if completion is not None else 502,
        "stored": True,
        "messages": [{"role": "user", "content": f"question {i}"}],
        "completion": completion,
        "prompt_tokens": 5,
        "completion_tokens": 7 if completion is not None else 0,
        "error": None if completion is not None else "upstream answered 500",
    }
    return RequestEntry(**(fields | kw))


def write(url: str, settings, entries: list) -> RequestLogWriter:
    """Through a log process, as the gateway writes; it is gone once the writer is closed."""
    worker = Worker("test-request-log")
    writer = RequestLogWriter(url, format_check(settings), flush_seconds=0.05, worker=worker)
    writer.start()
    child = worker._proc
    for e in entries:
        assert writer.submit(e)
    writer.close()
    assert child.pid != os.getpid() and child.exitcode == 0
    return writer


def test_writer_and_reader(url, settings) -> None:
    entries = [
        entry(0, "production", "1", VALID),
        entry(1, "production", "1", MISSING_CITY),
        entry(2, "production", "1", None),  # an error: no completion, no format verdict
        entry(3, "canary", "2", "not json at all"),
        entry(
            4,
            "canary",
            "2",
            VALID,
            stored=False,
            messages=[{"role": "user", "content": "mail me: ines@example.com"}],
        ),
        entry(
            5,
            "canary",
            "2",
            VALID,
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "I am ines@example.com, card 4111 1111 1111 1111"},
            ],
        ),
        entry(6, "production", "1", VALID, ts=T0 + 100),  # outside the window below
        FeedbackEntry(T0 + 10, "r0", -1, None),
        FeedbackEntry(T0 + 11, "r0", 1, "call +1 415 555 0100"),  # the latest of r0 counts
        FeedbackEntry(T0 + 12, "r3", -1, None),
        FeedbackEntry(T0 + 13, "r5", -1, None),
    ]
    writer = write(url, settings, entries)
    assert (writer.written, writer.dropped) == (len(entries), 0)

    reader = RequestLogReader(url, "modelyard-assistant")
    window = {"since": T0, "until": T0 + 50}
    prod = reader.requests(alias="production", **window)
    assert [r.id for r in prod] == ["r0", "r1", "r2"]
    assert [r.format_valid for r in prod] == [True, False, None]
    assert prod[2].error == "upstream answered 500" and prod[2].status == 502
    canary = {r.id: r for r in reader.requests(version="2", **window)}
    assert canary["r3"].format_valid is False
    assert (canary["r4"].stored, canary["r4"].prompt, canary["r4"].completion) == (
        False,
        None,
        None,
    )
    assert canary["r5"].prompt == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "I am <EMAIL>, card <CREDIT_CARD>"},
    ]
    assert canary["r5"].time.timestamp() == T0 + 5

    feedback = reader.feedback(alias="production", **window)
    assert [(f.response_id, f.rating, f.correction) for f in feedback] == [
        ("r0", 1, "call <PHONE>")
    ]
    assert (feedback[0].version, feedback[0].completion) == ("1", VALID)
    assert len(reader.feedback(latest_only=False)) == 4

    p = reader.arm(alias="production", version="1", **window)
    assert (p.requests, p.errors, p.format_checked, p.format_valid) == (3, 1, 2, 1)
    assert (p.ratings_up, p.ratings_down, p.latency_ms) == (1, 0, [10.0, 11.0])
    c = reader.arm(alias="canary", **window)
    assert (c.error_rate, c.format_validity_rate, c.thumbs_up_rate) == (0.0, 2 / 3, 0.0)
    assert reader.arm(alias="canary", since=T0 + 50).requests == 0
    assert reader.response("r6").version == "1" and reader.response("nope") is None
    reader.close()


def test_format_check_is_the_frozen_suites(settings, eval_sample) -> None:
    """A suite freezes its schema; a later settings change does not redefine "valid" live."""
    publish_dataset(settings.storage, "ds-a", eval_sample["train"], eval_sample["eval"])
    freeze_suite(settings, "first suite")
    settings.gate.json_schema = {"type": "object", "required": ["email"]}
    assert format_check(settings)([VALID, MISSING_CITY, "{", "[]"]) == [True, False, False, False]


def test_a_full_queue_drops_and_counts_without_waiting(tmp_path, settings) -> None:
    dropped: list[int] = []
    writer = RequestLogWriter(
        f"sqlite:///{tmp_path / 'log.db'}",
        format_check(settings),
        queue_size=10,
        on_dropped=dropped.append,
    )  # not started: nothing drains the queue
    accepted = [writer.submit(entry(i, "production", "1", VALID)) for i in range(15)]
    assert accepted == [True] * 10 + [False] * 5 and sum(dropped) == writer.dropped == 5
    writer.start().close()
    assert writer.written == 10
    assert len(RequestLogReader(writer.url, "modelyard-assistant").requests()) == 10


def test_a_refused_batch_is_retried_then_dropped(tmp_path, settings, caplog) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    writer = RequestLogWriter(url, format_check(settings), flush_seconds=0.05)
    writer.committer.retries = 1
    with writer.committer.engine.begin() as conn:  # the database refuses every insert from now on
        conn.exec_driver_sql("DROP TABLE serving_requests")
    writer.start()
    assert writer.submit(entry(0, "production", "1", VALID))
    deadline = time.monotonic() + 10
    while writer.dropped == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    writer.close()
    assert (writer.written, writer.dropped) == (0, 1)
    assert "retrying" in caplog.text and "dropped 1 entries" in caplog.text
