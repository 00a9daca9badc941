"""Reading the request log: the contract canary analysis and feedback harvesting build on.

Everything is selected by a half-open time window ``[since, until)`` on the *request's* arrival
time and optionally by alias and/or version, for one registered model::

    reader = RequestLogReader.for_settings(settings)
    canary = reader.arm(version="7", alias="canary", since=t0, until=t1)
    prod = reader.arm(version="6", alias="production", since=t0, until=t1)
    canary.error_rate, canary.format_validity_rate, canary.thumbs_up_rate, canary.latency_ms

Feedback belongs to the window of the request it rates (a late thumbs-down still counts against
the version that answered). Only the latest rating per response counts in :meth:`arm`: a user
who clicks twice is one vote. Requests that named an adapter directly (``alias`` null) never
match an alias filter. Times are UTC; ``since``/``until`` take aware datetimes or unix seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from modelyard.serving.requestlog import engine_for, feedback_table, log_url, requests_table
from modelyard.settings import Settings

Instant = datetime | float | None


def _seconds(t: Instant) -> float | None:
    return t.timestamp() if isinstance(t, datetime) else t


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class RequestRecord:
    id: str
    time: datetime
    model: str
    alias: str | None
    version: str | None
    user_hash: str
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    status: int
    error: str | None
    format_valid: bool | None
    stored: bool
    prompt: list[dict] | None  # the scrubbed messages, when stored
    completion: str | None


@dataclass(frozen=True)
class FeedbackRecord:
    id: int
    time: datetime
    response_id: str
    rating: int
    correction: str | None
    # the request it rates
    alias: str | None
    version: str | None
    request_time: datetime
    user_hash: str
    prompt: list[dict] | None
    completion: str | None
    model: str = ""
    stored: bool = True
    format_valid: bool | None = None


@dataclass(frozen=True)
class ArmStats:
    """One arm (alias and/or version) over one window: counts and the raw latency samples."""

    requests: int
    errors: int
    format_checked: int  # answered requests (format_valid not null)
    format_valid: int
    ratings_up: int
    ratings_down: int
    latency_ms: list[float]  # successful requests only: an error's latency is not the model's

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def format_validity_rate(self) -> float | None:
        return self.format_valid / self.format_checked if self.format_checked else None

    @property
    def thumbs_up_rate(self) -> float | None:
        rated = self.ratings_up + self.ratings_down
        return self.ratings_up / rated if rated else None


class RequestLogReader:
    def __init__(self, url: str, model: str) -> None:
        self.engine = engine_for(url)
        self.model = model

    @classmethod
    def for_settings(cls, settings: Settings) -> RequestLogReader:
        return cls(log_url(settings), settings.registered_model)

    def close(self) -> None:
        self.engine.dispose()

    def _where(self, alias: str | None, version: str | None, since: Instant, until: Instant):
        r = requests_table.c
        clauses = [r.model == self.model]
        if alias is not None:
            clauses.append(r.alias == alias)
        if version is not None:
            clauses.append(r.version == str(version))
        if since is not None:
            clauses.append(r.ts >= _seconds(since))
        if until is not None:
            clauses.append(r.ts < _seconds(until))
        return sa.and_(*clauses)

    def requests(
        self,
        *,
        alias: str | None = None,
        version: str | None = None,
        since: Instant = None,
        until: Instant = None,
    ) -> list[RequestRecord]:
        query = (
            sa.select(requests_table)
            .where(self._where(alias, version, since, until))
            .order_by(requests_table.c.ts)
        )
        with self.engine.connect() as conn:
            return [_request(row) for row in conn.execute(query).mappings()]

    def response(self, response_id: str) -> RequestRecord | None:
        query = sa.select(requests_table).where(requests_table.c.id == response_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _request(row) if row else None

    def feedback(
        self,
        *,
        alias: str | None = None,
        version: str | None = None,
        since: Instant = None,
        until: Instant = None,
        latest_only: bool = True,
    ) -> list[FeedbackRecord]:
        """Feedback on the requests of the window, joined to them, oldest first."""
        query = _FEEDBACK.where(self._where(alias, version, since, until))
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        if latest_only:
            rows = list({row["response_id"]: row for row in rows}.values())
        return [_feedback(row) for row in rows]

    def latest_feedback(self, *, since: Instant, until: Instant) -> list[FeedbackRecord]:
        """Each response's latest feedback as of ``until``, for the responses whose latest
        feedback *arrived* in ``[since, until)``, oldest first.

        The unit of the daily feedback harvest, by feedback time rather than request time:
        a window that has ended always reads the same rows, so a re-run changes nothing,
        and feedback arriving days after its answer is harvested on the day it arrived
        instead of being missed by a harvest that already ran.
        """
        f = feedback_table.c
        rated = sa.select(f.response_id).where(f.ts >= _seconds(since), f.ts < _seconds(until))
        query = _FEEDBACK.where(
            requests_table.c.model == self.model,
            f.ts < _seconds(until),
            f.response_id.in_(rated),
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        latest = sorted({row["response_id"]: row for row in rows}.values(), key=_arrival)
        return [_feedback(row) for row in latest if row["ts"] >= _seconds(since)]

    def unlogged_feedback(self, *, since: Instant, until: Instant) -> int:
        """Responses rated in ``[since, until)`` that have no request row: the gateway
        accepted the rating, but the request's log entry was dropped (a full log queue)."""
        f, r = feedback_table.c, requests_table.c
        query = (
            sa.select(sa.func.count(sa.distinct(f.response_id)))
            .select_from(feedback_table.outerjoin(requests_table, f.response_id == r.id))
            .where(f.ts >= _seconds(since), f.ts < _seconds(until), r.id.is_(None))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def arm(
        self,
        *,
        alias: str | None = None,
        version: str | None = None,
        since: Instant = None,
        until: Instant = None,
    ) -> ArmStats:
        """Counts for the two-proportion tests and latency samples for Mann-Whitney U."""
        r = requests_table.c
        where = self._where(alias, version, since, until)
        counts = sa.select(
            sa.func.count(),
            sa.func.count().filter(r.error.is_not(None)),
            sa.func.count(r.format_valid),
            sa.func.count().filter(r.format_valid.is_(True)),
        ).where(where)
        latencies = sa.select(r.latency_ms).where(where, r.error.is_(None)).order_by(r.ts)
        with self.engine.connect() as conn:
            total, errors, checked, valid = conn.execute(counts).one()
            samples = list(conn.execute(latencies).scalars())
        ratings = [
            fb.rating
            for fb in self.feedback(alias=alias, version=version, since=since, until=until)
        ]
        return ArmStats(
            requests=total,
            errors=errors,
            format_checked=checked,
            format_valid=valid,
            ratings_up=ratings.count(1),
            ratings_down=ratings.count(-1),
            latency_ms=samples,
        )


_FEEDBACK = (
    sa.select(
        feedback_table.c.id,
        feedback_table.c.ts,
        feedback_table.c.response_id,
        feedback_table.c.rating,
        feedback_table.c.correction,
        requests_table.c.model,
        requests_table.c.alias,
        requests_table.c.version,
        requests_table.c.ts.label("request_ts"),
        requests_table.c.user_hash,
        requests_table.c.stored,
        requests_table.c.format_valid,
        requests_table.c.prompt,
        requests_table.c.completion,
    )
    .select_from(
        feedback_table.join(requests_table, feedback_table.c.response_id == requests_table.c.id)
    )
    .order_by(feedback_table.c.ts, feedback_table.c.id)
)


def _arrival(row) -> tuple[float, int]:
    return row["ts"], row["id"]


def _feedback(row) -> FeedbackRecord:
    return FeedbackRecord(
        id=row["id"],
        time=_time(row["ts"]),
        response_id=row["response_id"],
        rating=row["rating"],
        correction=row["correction"],
        alias=row["alias"],
        version=row["version"],
        request_time=_time(row["request_ts"]),
        user_hash=row["user_hash"],
        prompt=json.loads(row["prompt"]) if row["prompt"] else None,
        completion=row["completion"],
        model=row["model"],
        stored=row["stored"],
        format_valid=row["format_valid"],
    )


def _request(row) -> RequestRecord:
    return RequestRecord(
        id=row["id"],
        time=_time(row["ts"]),
        model=row["model"],
        alias=row["alias"],
        version=row["version"],
        user_hash=row["user_hash"],
        latency_ms=row["latency_ms"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        status=row["status"],
        error=row["error"],
        format_valid=row["format_valid"],
        stored=row["stored"],
        prompt=json.loads(row["prompt"]) if row["prompt"] else None,
        completion=row["completion"],
    )
