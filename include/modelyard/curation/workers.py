"""Worker processes for curation and its gate: spawned, bounded, and gone with their parent.

Spawned, not forked: Arrow runs thread pools, which a fork would copy mid-state. A spawned
worker imports numpy, Arrow and the curation code itself (~200 MB), and would otherwise
wait on its queue forever once the parent is killed: each one watches its parent and exits
when it is gone, SIGKILL included.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import current_process, get_context
from typing import Any


def _exit_with(parent: int) -> None:
    """Pool worker initializer: leave when the parent process is gone. A thread polling the
    parent pid rather than Linux's PR_SET_PDEATHSIG: the same on every OS, and not tied to
    the lifetime of the parent thread that happened to start the worker."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def can_spawn() -> bool:
    """A daemonic process (a pool worker itself) may not have children."""
    return not current_process().daemon


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """``workers`` spawned processes; on leaving, pending jobs are cancelled (an error or
    SIGTERM does not wait for queued work) and the workers stopped."""
    pool = ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_exit_with,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class OrderedMap:
    """``fn(*job)`` for each job, results in job order: in ``pool`` with at most ``window``
    jobs in flight (submitted from construction on, so the caller can do other work while
    the first ones run), or lazily in this process when ``pool`` is None."""

    def __init__(
        self,
        pool: ProcessPoolExecutor | None,
        fn: Callable[..., Any],
        jobs: Iterable[tuple],
        window: int,
    ) -> None:
        self.pool, self.fn, self.jobs, self.window = pool, fn, iter(jobs), window
        self.in_flight: deque[Future] = deque()
        self._fill()

    def _fill(self) -> None:
        if self.pool is None:
            return
        while len(self.in_flight) < self.window and (job := next(self.jobs, None)) is not None:
            self.in_flight.append(self.pool.submit(self.fn, *job))

    def __iter__(self) -> Iterator[Any]:
        if self.pool is None:
            yield from (self.fn(*job) for job in self.jobs)
            return
        while self.in_flight:
            result = self.in_flight.popleft().result()
            self._fill()
            yield result
