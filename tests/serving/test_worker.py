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
