"""Race one worker function in several processes released together by a barrier."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def at_once(target: Callable[..., None], args: list[tuple], timeout: float) -> list[Any]:
    """Run ``target(*a, barrier, results)`` for each ``a`` of ``args``, one spawned process
    each, all past ``barrier.wait()`` together; what they put on ``results``, in arrival order.
    Every process must exit cleanly (a crash would otherwise hide as a missing result)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(args)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, f"{p.name} exited {p.exitcode}"
    return outcomes
