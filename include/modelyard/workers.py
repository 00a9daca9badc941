"""Worker processes for curation and its gate: spawned, bounded, and gone with their parent.

Spawned, not forked: Arrow runs thread pools, which a fork would copy mid-state. A spawned
worker imports numpy, Arrow and the curation code itself (~200 MB), and would otherwise
wait on its queue forever once the parent is killed: each one watches its parent and exits
when it is gone, SIGKILL included.
"""

from __future__ import annotations

import atexit
import gc
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import current_process, get_context
from typing import Any


def _start_worker(parent: int) -> None:
    """Pool worker initializer. The worker leaves when its parent is gone (``_exit_with``),
    and its exit skips the final collection's walk over what numpy, Arrow and pydantic
    left alive (``gc.freeze``, as the CLI's own exit does): that walk made every pool
    shutdown, which the parent waits for, ~0.3 s longer (0.30-0.56 s -> 0.05-0.15 s,
    measured). Memory goes back to the OS either way."""
    _exit_with(parent)
    atexit.register(gc.freeze)


def _exit_with(parent: int) -> None:
    """Leave when the parent process is gone. A thread polling the parent pid rather than
    Linux's PR_SET_PDEATHSIG: the same on every OS, and not tied to the lifetime of the
    parent thread that happened to start the worker."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Workers:
    """The worker processes of a run: spawned on first use, shared by the stages given the
    same instance (the CLI's curation and gate pay for one start-up, ~0.7 CPU-s a worker),
    stopped on leaving; pending jobs are then cancelled, not waited for (an error or
    SIGTERM does not sit out queued work)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool: ProcessPoolExecutor | None = None

    def pool(self) -> ProcessPoolExecutor | None:
        """The pool, or None when work must stay in this process (one worker asked for, or
        this is a daemonic process, which may not have children)."""
        if self.count <= 1 or current_process().daemon:
            return None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.count,
                mp_context=get_context("spawn"),
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
        return self._pool

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@contextmanager
def workers_for(shared: Workers | None, count: int) -> Iterator[Workers]:
    """``shared`` when a caller passed its workers, else workers of this stage alone."""
    if shared is not None:
        yield shared
        return
    with Workers(count) as own:
        yield own


def collector_paused(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with Python's cyclic garbage collector paused. A job (a curation batch,
    a gate span) allocates some 10^5 containers, decoded records that refcounting frees at
    its end, and the collector's repeated passes over them were 8-25% of the job's CPU
    (measured: prepare ~10%, the gate's columns ~25%); it runs again between jobs, so a
    cycle a job leaves is still collected."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return fn(*args)
    finally:
        if enabled:
            gc.enable()


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
            self.in_flight.append(self.pool.submit(collector_paused, self.fn, *job))

    def __iter__(self) -> Iterator[Any]:
        if self.pool is None:
            yield from (collector_paused(self.fn, *job) for job in self.jobs)
            return
        try:
            while self.in_flight:
                result = self.in_flight.popleft().result()
                self._fill()
                yield result
        finally:  # stopped early (an error, a closed generator): drop the queued jobs
            for future in self.in_flight:
                future.cancel()
