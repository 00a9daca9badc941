"""The gateway's child process: answers come back, errors are raised in the caller, a child
that dies is replaced at the next call, and closing the pipe ends it."""

from __future__ import annotations

import os
import signal

import pytest

from modelyard.serving.worker import Worker


def test_calls_errors_death_and_close() -> None:
    worker = Worker("test-worker").start()
    try:
        first = worker.call(os.getpid)
        assert first != os.getpid()  # it ran in the child
        with pytest.raises(ValueError, match="invalid literal"):
            worker.call(int, "not a number")
        assert worker.call(os.getpid) == first  # an error does not cost the child

        os.kill(first, signal.SIGKILL)
        worker._proc.join(10)
        second = worker.call(os.getpid)  # a new child, no error for the caller
        assert second not in (first, os.getpid())
        # SIGTERM to the child (e.g. to the whole process group) does not cut it off.
        os.kill(second, signal.SIGTERM)
        assert worker.call(os.getpid) == second
    finally:
        proc = worker._proc
        worker.close()
    assert proc is not None and proc.exitcode == 0


_WARMED: list[int] = []


def _warm() -> None:
    _WARMED.append(os.getpid())


def _warmed() -> list[int]:
    return _WARMED


def _fail() -> None:
    raise RuntimeError("cannot warm up")


def test_each_child_warms_up_once_before_its_first_call() -> None:
    worker = Worker("test-warm", warm=_warm).start()
    try:
        child = worker.call(os.getpid)
        assert worker.call(_warmed) == [child]  # once, in the child, before the calls
        os.kill(child, signal.SIGKILL)
        worker._proc.join(10)
        replacement = worker.call(os.getpid)
        assert worker.call(_warmed) == [replacement]  # a new child warms up too
    finally:
        worker.close()
    assert _WARMED == []  # never in the caller
    # A warm-up that fails costs nothing but itself: the calls still run.
    failing = Worker("test-warm-fails", warm=_fail)
    try:
        assert failing.call(int, "7") == 7
    finally:
        failing.close()
