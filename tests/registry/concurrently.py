"""Race one worker function in several processes released together by a barrier.

The processes fork from a server process that imported MLflow and the registry once
(``forkserver`` with a preload): a spawned process paid those imports, ~5 CPU-s here, before
it could race, and these tests start a dozen. Forked from a server, not from this process,
whose threads (xdist's, MLflow's) a fork would copy mid-state. Each child takes this process's
environment as it is at the start, as a spawned one would.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.context import ForkServerContext
from typing import Any

PRELOAD = ["mlflow", "modelyard.registry", "modelyard.registry.ledger", "redis", "psycopg2"]


def context() -> ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # takes effect when the server starts (once)
    return ctx


def _in_env(env: dict[str, str], target: Callable[..., None], *args: Any) -> None:
    os.environ.clear()
    os.environ.update(env)
    target(*args)


def start(ctx: ForkServerContext, target: Callable[..., None], args: tuple) -> Any:
    """A started process running ``target(*args)`` in this process's current environment."""
    proc = ctx.Process(target=_in_env, args=(dict(os.environ), target, *args))
    proc.start()
    return proc


def at_once(target: Callable[..., None], args: list[tuple], timeout: float) -> list[Any]:
    """Run ``target(*a, barrier, results)`` for each ``a`` of ``args``, one process each, all
    past ``barrier.wait()`` together; what they put on ``results``, in arrival order. Every
    process must exit cleanly (a crash would otherwise hide as a missing result)."""
    ctx = context()
    barrier, results = ctx.Barrier(len(args)), ctx.Queue()
    procs = [start(ctx, target, (*a, barrier, results)) for a in args]
    outcomes = [results.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, f"{p.name} exited {p.exitcode}"
    return outcomes
