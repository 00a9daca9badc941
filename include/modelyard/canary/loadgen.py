"""Simulated users for the demo and the tests: chat requests and honest ratings.

Each user asks the sample task (extract a person as JSON) and rates the answer the way the
app using it would: thumbs up when it is valid JSON with the right fields (name, job, city),
thumbs down otherwise. Users are sticky (``user`` names them), so the gateway's canary share
sends the same users to the canary for the whole run. Not every answer is rated
(``rate_share``), as in real feedback.

    python -m modelyard.canary.loadgen --url http://127.0.0.1:8000 --requests 200
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from modelyard.sampledata import curated_records

FIELDS = ("name", "job", "city")


def right_answer(answer: str) -> bool:
    """Valid JSON with the right fields (``name``, ``job``, ``city``), each a non-empty string:
    what the app consuming the answer needs (the tiny demo model gets this shape right long
    before it gets every name right)."""
    try:
        got = json.loads(answer)
    except ValueError:
        return False
    return isinstance(got, dict) and all(
        isinstance(got.get(k), str) and got[k].strip() for k in FIELDS
    )


@dataclass
class LoadResult:
    requests: int = 0
    failed: int = 0
    by_alias: Counter = field(default_factory=Counter)
    thumbs: Counter = field(default_factory=Counter)  # (alias, +1 | -1) -> count
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"{self.requests} requests in {self.seconds:.1f} s, {self.failed} failed"]
        for alias, n in sorted(self.by_alias.items()):
            up, down = self.thumbs[(alias, 1)], self.thumbs[(alias, -1)]
            out.append(f"{alias}: {n} answers, rated {up} up / {down} down")
        return out


def simulate_users(
    url: str,
    model: str,
    *,
    requests: int = 200,
    users: int = 40,
    concurrency: int = 4,
    rate_share: float = 0.7,
    max_tokens: int = 48,
    seed: int = 0,
) -> LoadResult:
    """Send ``requests`` chat completions from ``users`` users; rate a share of the answers."""
    records = curated_records(max(requests, 1), seed=seed + 1000)  # not the training sample
    rng = random.Random(seed)
    plan = [
        (f"sim-user-{i % users}", records[i], rng.random() < rate_share) for i in range(requests)
    ]
    result = LoadResult()
    lock = threading.Lock()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120)
        return local.client

    def one(item: tuple[str, dict, bool]) -> None:
        user, record, rates = item
        body = {
            "model": model,
            "messages": [{"role": "user", "content": record["prompt"]}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "user": user,
        }
        try:
            resp = client().post("/v1/chat/completions", json=body)
        except httpx.HTTPError:
            with lock:
                result.requests += 1
                result.failed += 1
            return
        alias = resp.headers.get("x-modelyard-alias", "?")
        ok = resp.status_code == 200
        rating = None
        if ok and rates:
            answer = resp.json()["choices"][0]["message"]["content"]
            rating = 1 if right_answer(answer) else -1
            client().post("/v1/feedback", json={"response_id": resp.json()["id"], "rating": rating})
        with lock:
            result.requests += 1
            result.failed += not ok
            result.by_alias[alias] += ok
            if rating is not None:
                result.thumbs[(alias, rating)] += 1

    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, plan))
    result.seconds = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="modelyard-assistant")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    result = simulate_users(
        args.url,
        args.model,
        requests=args.requests,
        users=args.users,
        concurrency=args.concurrency,
    )
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
