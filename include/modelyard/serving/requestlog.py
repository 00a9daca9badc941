"""The request log: every routed request and every feedback event, in SQLite or PostgreSQL.

Schema (SQLAlchemy Core, created on first use; times are UTC unix seconds)::

    serving_requests                      one row per chat completion the gateway routed
      id            text primary key      the response id the client got (chatcmpl-...)
      ts            float                 when the request arrived
      model         text                  registered model (or the adapter a request named)
      alias         text null             production | canary; null when a request named an
                                          adapter directly (an upstream serving another gateway)
      version       text null             version that answered; null when none was loaded
      user_hash     text                  salted hash of ``user`` (else of the client address)
      latency_ms    float                 arrival to response, as the client saw the gateway
      prompt_tokens, completion_tokens    integers, 0 on error
      status        integer               HTTP status answered
      error         text null             one line; null on success
      format_valid  boolean null          the completion passed the eval suite's format_validity
                                          check (its schema); null when there was no completion
      stored        boolean               false for ``"store": false`` requests: no text kept
      prompt        text null             the messages as JSON, PII-scrubbed; null unless stored
      completion    text null             PII-scrubbed; null unless stored
      max_tokens    integer, temperature float

    serving_feedback                      one row per POST /v1/feedback
      id            integer primary key
      ts            float
      response_id   text                  -> serving_requests.id
      rating        smallint              1 (thumbs up) or -1
      correction    text null             PII-scrubbed; null when absent or the response was
                                          sent with ``"store": false``

Writing never blocks a request: :meth:`RequestLogWriter.submit` appends the entry to a bounded
buffer and returns. One background thread wakes every ``log_flush_seconds`` and hands the buffered
entries to the gateway's log process (:mod:`modelyard.serving.worker`), which scrubs the texts
with curation's PII scrubber and checks formats (both batched, off the request path and off its
GIL) and commits them in transactions of up to ``log_batch_size`` rows. When ``log_queue_size``
entries are waiting, a new one is dropped and counted (``modelyard_serving_log_dropped_total``,
and a warning): losing a log row is better than stalling traffic, and the counter says it
happened. A batch the database refuses is retried for a while, then dropped and counted the same
way. SQLite runs in WAL mode with ``synchronous=NORMAL``: a SIGKILL of the gateway loses at most
the entries of the last flush interval (still in its buffer; the log process commits what it was
handed, then exits) and leaves a readable file. Read it with
:mod:`modelyard.serving.logreader`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter as TallyCounter
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from modelyard.serving.worker import Worker
from modelyard.settings import Settings

log = logging.getLogger(__name__)

metadata = sa.MetaData()
requests_table = sa.Table(
    "serving_requests",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("alias", sa.String(32)),
    sa.Column("version", sa.String(32)),
    sa.Column("user_hash", sa.String(32), nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("format_valid", sa.Boolean),
    sa.Column("stored", sa.Boolean, nullable=False),
    sa.Column("prompt", sa.Text),
    sa.Column("completion", sa.Text),
    sa.Column("max_tokens", sa.Integer),
    sa.Column("temperature", sa.Float),
    sa.Index("ix_serving_requests_window", "model", "version", "ts"),
    sa.Index("ix_serving_requests_alias", "model", "alias", "ts"),
)
feedback_table = sa.Table(
    "serving_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("response_id", sa.String(64), nullable=False, index=True),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("correction", sa.Text),
)


def log_url(settings: Settings) -> str:
    """The configured database, else SQLite at ``<home>/serving/requests.db``."""
    return settings.serving.log_url or f"sqlite:///{settings.home / 'serving' / 'requests.db'}"


def engine_for(url: str) -> sa.Engine:
    """An engine with the tables in place; SQLite in WAL mode, waiting on locks, not failing."""
    parsed = sa.make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_pre_ping=not sqlite)
    if sqlite:

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    metadata.create_all(engine)
    return engine


@dataclass
class RequestEntry:
    """A routed request as the gateway saw it; texts are raw here and scrubbed by the writer."""

    id: str
    ts: float
    model: str
    alias: str | None
    version: str | None
    user_hash: str
    latency_ms: float
    status: int
    stored: bool
    messages: list[dict[str, str]] = field(default_factory=list)
    completion: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass
class FeedbackEntry:
    ts: float
    response_id: str
    rating: int
    correction: str | None  # already None when the response was not stored


FormatCheck = Callable[[list[str]], list[bool]]
Scrubber = Callable[[list[str]], list[str]]


def pii_scrubber() -> Scrubber:
    """Curation's scrubber (batched, typed placeholders such as ``<EMAIL>``)."""
    from modelyard.pii import scrub_batch

    return lambda texts: scrub_batch(texts, TallyCounter())


class BatchCommitter:
    """Scrubs, checks and inserts one batch at a time; what the writer's thread (or its child
    process, see :class:`RequestLogWriter`) runs. A batch the database refuses is retried with
    backoff (0.5 s doubling), then dropped and counted."""

    def __init__(
        self, url: str, format_check: FormatCheck, scrub: Scrubber | None = None, retries: int = 5
    ) -> None:
        self.retries = retries
        self._format_check = format_check
        self._scrub = scrub or pii_scrubber()
        self.engine = engine_for(url)

    def commit(self, batch: list, stopping: bool = False) -> tuple[int, int]:
        """(rows written, rows dropped); ``stopping``: no retry, the gateway is shutting down."""
        requests, feedback = self.rows(batch)
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                with self.engine.begin() as conn:
                    if requests:
                        conn.execute(requests_table.insert(), requests)
                    if feedback:
                        conn.execute(feedback_table.insert(), feedback)
            except sa.exc.SQLAlchemyError as exc:
                if attempt == self.retries or stopping:
                    why = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    log.warning("request log: dropped %d entries: %s", len(batch), why)
                    return 0, len(batch)
                log.warning("request log: write failed (%s), retrying", type(exc).__name__)
                time.sleep(delay)
                delay *= 2
            else:
                return len(batch), 0
        raise AssertionError("unreachable")

    def rows(self, batch: list) -> tuple[list[dict], list[dict]]:
        """Table rows for a batch: texts scrubbed, formats checked, unstored texts dropped."""
        reqs = [e for e in batch if isinstance(e, RequestEntry)]
        fbs = [e for e in batch if isinstance(e, FeedbackEntry)]
        answered = [e for e in reqs if e.completion is not None]
        verdicts = dict(
            zip(
                (e.id for e in answered),
                self._format_check([e.completion for e in answered]),
                strict=True,
            )
        )
        stored = [e for e in reqs if e.stored]
        # One scrubber call for every text of the batch: it filters candidates in one C++ pass.
        texts = [m["content"] for e in stored for m in e.messages]
        texts += [e.completion for e in stored if e.completion is not None]
        texts += [f.correction for f in fbs if f.correction is not None]
        clean = iter(self._scrub(texts))
        prompts = {
            e.id: json.dumps(
                [{"role": m["role"], "content": next(clean)} for m in e.messages],
                ensure_ascii=False,
            )
            for e in stored
        }
        completions = {e.id: next(clean) if e.completion is not None else None for e in stored}
        request_rows = [
            {
                "id": e.id,
                "ts": e.ts,
                "model": e.model,
                "alias": e.alias,
                "version": e.version,
                "user_hash": e.user_hash,
                "latency_ms": e.latency_ms,
                "prompt_tokens": e.prompt_tokens,
                "completion_tokens": e.completion_tokens,
                "status": e.status,
                "error": e.error,
                "format_valid": verdicts.get(e.id),
                "stored": e.stored,
                "prompt": prompts.get(e.id),
                "completion": completions.get(e.id),
                "max_tokens": e.max_tokens,
                "temperature": e.temperature,
            }
            for e in reqs
        ]
        feedback_rows = [
            {
                "ts": f.ts,
                "response_id": f.response_id,
                "rating": f.rating,
                "correction": next(clean) if f.correction is not None else None,
            }
            for f in fbs
        ]
        return request_rows, feedback_rows


_child_committers: dict[str, BatchCommitter] = {}


def open_in_child(url: str, format_check: FormatCheck) -> None:
    """Make the committer (engine and tables, scrubber) in a :class:`Worker` child, once."""
    if url not in _child_committers:
        _child_committers[url] = BatchCommitter(url, format_check)


def commit_in_child(
    url: str, format_check: FormatCheck, batch: list, stopping: bool
) -> tuple[int, int]:
    """:meth:`BatchCommitter.commit` in a :class:`Worker` child."""
    open_in_child(url, format_check)
    return _child_committers[url].commit(batch, stopping)


class RequestLogWriter:
    """A bounded buffer and one thread that commits it in batches (see the module docstring).

    The buffer is a ``deque``: appending is one atomic operation, where a ``queue.Queue`` takes
    a lock per entry that the request path contends for with this thread (a profile of the
    gateway under load showed about 1 ms per ``put``; the ``deque`` append is microseconds).

    With a ``worker``, the thread only hands each batch to that child process, which scrubs,
    checks and commits it: the gateway does this, so the commits never hold the GIL its event
    loop runs on (see :mod:`modelyard.serving.worker`). Without one, the thread commits itself.
    """

    def __init__(
        self,
        url: str,
        format_check: FormatCheck,
        flush_seconds: float = 0.25,
        batch_size: int = 1000,
        queue_size: int = 100_000,
        scrub: Scrubber | None = None,
        on_written: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[int], None] = lambda n: None,
        worker: Worker | None = None,
    ) -> None:
        self.url = url
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.queue_size = queue_size
        self._pending: deque = deque()
        self._format_check = format_check
        self._worker = worker
        self.committer = None if worker else BatchCommitter(url, format_check, scrub)
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self.written = 0
        self._full = 0  # counted on the request path, reported by the writer thread
        self._reported_full = 0
        self._refused = 0

    @property
    def dropped(self) -> int:
        return self._full + self._refused

    def start(self) -> RequestLogWriter:
        """Start the thread; with a worker, once the child is ready to commit (a database that
        cannot be opened fails here, and no early entry waits on the child's imports)."""
        if self._worker is not None:
            self._worker.call(open_in_child, self.url, self._format_check)
        self._thread.start()
        return self

    def depth(self) -> int:
        return len(self._pending)

    def submit(self, entry: RequestEntry | FeedbackEntry) -> bool:
        """Buffer an entry without waiting; False (and counted) when the buffer is full."""
        if len(self._pending) >= self.queue_size:
            self._full += 1
            self._on_dropped(1)
            return False
        self._pending.append(entry)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is buffered, then stop the thread (and the worker: it is ours)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self._drain()
        if self._worker is not None:
            self._worker.close()
        else:
            self.committer.engine.dispose()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            self._drain()
            if stopping:
                return

    def _drain(self) -> None:
        if self._full != self._reported_full:
            log.warning(
                "request log: dropped %d entries: the buffer was full",
                self._full - self._reported_full,
            )
            self._reported_full = self._full
        while self._pending:
            n = min(self.batch_size, len(self._pending))
            self._commit([self._pending.popleft() for _ in range(n)])

    def _commit(self, batch: list) -> None:
        stopping = self._stop.is_set()
        try:
            if self._worker is None:
                written, refused = self.committer.commit(batch, stopping)
            else:
                written, refused = self._worker.call(
                    commit_in_child, self.url, self._format_check, batch, stopping
                )
        except Exception as exc:  # noqa: BLE001 - e.g. the child died: count it, keep writing
            log.warning("request log: dropped %d entries: %s", len(batch), exc)
            written, refused = 0, len(batch)
        if written:
            self.written += written
            self._on_written(written)
        if refused:
            self._refused += refused
            self._on_dropped(refused)
