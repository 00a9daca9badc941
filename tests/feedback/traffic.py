"""Traffic for feedback tests: requests and ratings written by the gateway's own log writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelyard.settings import Settings


def day_start(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def interval(day: str) -> tuple[datetime, datetime]:
    return day_start(day), day_start(day) + timedelta(days=1)


def at(day: str, hour: float) -> float:
    return (day_start(day) + timedelta(hours=hour)).timestamp()


def request(
    rid: str,
    ts: float,
    prompt: str,
    completion: str | None,
    *,
    stored: bool = True,
    version: str = "1",
    alias: str | None = "production",
):
    from modelyard.serving.requestlog import RequestEntry

    return RequestEntry(
        id=rid,
        ts=ts,
        model="modelyard-assistant",
        alias=alias,
        version=version,
        user_hash="u-" + rid[-4:],
        latency_ms=12.0,
        status=200 if completion is not None else 500,
        stored=stored,
        messages=[{"role": "user", "content": prompt}],
        completion=completion,
        error=None if completion is not None else "backend failed",
    )


def rate(rid: str, ts: float, rating: int, correction: str | None = None):
    from modelyard.serving.requestlog import FeedbackEntry

    return FeedbackEntry(ts=ts, response_id=rid, rating=rating, correction=correction)


def serve(settings: Settings, entries: list) -> None:
    """Write entries through the gateway's own writer (scrubbing, format checks, SQLite)."""
    from modelyard.serving.formatcheck import format_check
    from modelyard.serving.requestlog import RequestLogWriter, log_url

    writer = RequestLogWriter(log_url(settings), format_check(settings), flush_seconds=0.05)
    writer.start()
    for entry in entries:
        assert writer.submit(entry)
    writer.close()
    assert writer.dropped == 0
