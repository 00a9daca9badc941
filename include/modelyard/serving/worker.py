"""A child process that runs the gateway's background work off the request path's GIL.

The request-log commits (PII scrub, format check, SQL) and the registry reads (MLflow) are
CPU-bound Python: 6-13 ms per flush of 30-120 entries and 10-13 ms per alias poll, measured on
this 2-core box. Run on a thread of the gateway they hold the GIL in bursts, and every time the
event loop gives the GIL up (each socket read, write or poll) it waits for it again for up to the
interpreter's 5 ms switch interval: the tail of the latency the gateway adds came from there. In
a child process they run beside the event loop instead of between its steps.

One child runs its calls in order; the caller thread waits on a pipe (no GIL held). A child
first runs its ``warm`` function, if it has one (the imports and connections its calls need), so
a child started early does that work beside the parent's own start-up. The child
is spawned (never forked from a process with threads and a loaded model), ignores SIGINT and
SIGTERM so a Ctrl-C or a stop signal to the process group cannot cut a batch in half, and
exits when the gateway's end of the pipe closes: on a clean stop after the last call, and on a
SIGKILL of the gateway after finishing what it had already received. A child that dies is
spawned again at the next call.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class WorkerError(RuntimeError):
    """A call failed in the child with an exception that could not be sent back as it was."""


def _serve(calls: Connection, warm: Callable[[], object] | None) -> None:
    """The child: answer each (function, args) with ("ok", result) or ("error", exception)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if warm is not None:
        try:
            warm()
        except Exception:  # noqa: BLE001 - the first call that needs it fails and says why
            pass
    while True:
        try:
            fn, args = calls.recv()
        except (EOFError, OSError):  # the gateway closed its end, or died
            return
        try:
            answer = ("ok", fn(*args))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            answer = ("error", exc)
        try:
            calls.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError):
            calls.send(("error", WorkerError(f"{type(answer[1]).__name__}: {answer[1]}")))
        except OSError:
            return


class Worker:
    """``call(fn, *args)`` runs ``fn`` in the child and returns its result or raises its error.

    ``fn`` and its arguments must be picklable (module-level functions, plain data), and so
    must ``warm``, which each new child runs before its first call. Calls from several threads
    are serialised.
    """

    def __init__(self, name: str, warm: Callable[[], object] | None = None) -> None:
        self.name = name
        self.warm = warm
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None

    def start(self) -> Worker:
        """Spawn the child now, without waiting for it (otherwise the first call does)."""
        with self._lock:
            self._ensure()
        return self

    def _ensure(self) -> Connection:
        if self._conn is None or self._proc is None or not self._proc.is_alive():
            self._close_conn()
            ctx = multiprocessing.get_context("spawn")
            ours, theirs = ctx.Pipe()
            self._proc = ctx.Process(
                target=_serve, args=(theirs, self.warm), name=self.name, daemon=False
            )
            self._proc.start()
            theirs.close()  # the child's end lives in the child only: its death is our EOF
            self._conn = ours
        return self._conn

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            conn = self._ensure()
            try:
                conn.send((fn, args))
                status, value = conn.recv()
            except (EOFError, OSError) as exc:
                self._close_conn()
                raise WorkerError(f"the {self.name} process died: {exc!r}") from exc
        if status == "error":
            raise value
        return value

    def close(self, timeout: float = 60.0) -> None:
        """Close the pipe (the child finishes its call and exits) and wait for it."""
        with self._lock:
            self._close_conn()
            if self._proc is not None:
                self._proc.join(timeout)
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join()
                self._proc = None

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
