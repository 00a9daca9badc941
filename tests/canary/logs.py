"""Request logs written through the gateway's own writer (SQLite), arm by arm, for the analysis."""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

from modelyard.serving.requestlog import FeedbackEntry, RequestEntry, RequestLogWriter

GOOD = json.dumps({"name": "Ada", "job": "pilot", "city": "Oslo"})
BAD = "Ada is a pilot"


def _valid(texts: list[str]) -> list[bool]:
    out = []
    for text in texts:
        try:
            out.append(set(json.loads(text)) == {"name", "job", "city"})
        except ValueError:
            out.append(False)
    return out


def writer(url: str) -> RequestLogWriter:
    return RequestLogWriter(url, _valid, flush_seconds=0.05, scrub=lambda texts: texts).start()


def write_arm(
    log: RequestLogWriter,
    *,
    alias: str,
    version: str,
    n: int,
    error_rate: float = 0.0,
    valid_rate: float = 1.0,
    thumbs_up_rate: float | None = None,
    latency_ms: float = 50.0,
    ts: float | None = None,
    model: str = "modelyard-assistant",
    seed: int = 0,
) -> None:
    """``n`` requests with those rates (exact shares, shuffled) and ratings on every answer."""
    rng = random.Random(f"{alias}-{version}-{seed}")
    errors = set(rng.sample(range(n), round(n * error_rate)))
    answered = [i for i in range(n) if i not in errors]
    valid = set(rng.sample(answered, round(len(answered) * valid_rate)))
    liked = set(rng.sample(answered, round(len(answered) * (thumbs_up_rate or 0))))
    now = time.time() if ts is None else ts
    for i in range(n):
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        failed = i in errors
        log.submit(
            RequestEntry(
                id=rid,
                ts=now + 0.01 * rng.random(),  # after the canary moved, before analysis
                model=model,
                alias=alias,
                version=version,
                user_hash=f"{rng.getrandbits(64):016x}",
                latency_ms=latency_ms * rng.uniform(0.8, 1.2),
                status=500 if failed else 200,
                stored=True,
                messages=[{"role": "user", "content": "x"}],
                completion=None if failed else (GOOD if i in valid else BAD),
                error="backend failed" if failed else None,
            )
        )
        if thumbs_up_rate is not None and not failed:
            log.submit(FeedbackEntry(now, rid, 1 if i in liked else -1, None))


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
