"""One call on a spawned worker process while this one goes on: the evaluation's second core.

After the fit, the evaluation runs on one core: the test split's baselines (rank filters that
hold the GIL, so a thread would only take turns with this one) need nothing from the model, so
a worker process computes them while this process predicts and scores the validation split.
The worker is spawned, never forked (the caller runs Prefect's threads), imports only what the
call needs (not torch), and sends back the result or the exception it raised; `call_aside`
ends it however the caller's block ends, and a worker that dies before sending its result is
an error naming its purpose, not a hang.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from lstm_pipeline.errors import WorkerDiedError

T = TypeVar("T")

# From this many test windows the evaluation computes the test split's baselines on a worker
# process. Spawning it and importing numpy, pandas and scipy costs ~0.6 s, and sending its
# [N, H, Q] float64 arrays back ~0.1 s per 100k windows, against ~0.5 s of baselines per 100k
# windows: a few thousand windows (the six-ticker sample) are faster in one process.
ASIDE_FROM = 50_000
EXIT_WAIT_S = 5.0  # how long a worker that sent its result may take to exit before it is killed


def cpu_threads() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worth_a_process(windows: int) -> bool:
    """Whether a call over this many windows should go to a worker process: above ASIDE_FROM,
    and only where this process may start one (a daemonic one, such as a Dask worker, may not)."""
    return windows >= ASIDE_FROM and not multiprocessing.current_process().daemon


class Pending(Generic[T]):
    """The call running on the worker; `result()` waits for what it returned (or raises what it
    raised, or WorkerDiedError when it died first), and returns it again on later calls."""

    def __init__(self, process: Any, receive: Connection, purpose: str) -> None:
        self._process, self._receive, self._purpose = process, receive, purpose
        self._outcome: tuple[bool, Any] | None = None

    def result(self) -> T:
        if self._outcome is None:
            self._outcome = self._received()
        ok, value = self._outcome
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _received(self) -> tuple[bool, Any]:
        try:
            return self._receive.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):  # only the worker held the other end: it is gone
            self._process.join(EXIT_WAIT_S)
            raise WorkerDiedError(
                f"{self._purpose}: the worker process (pid {self._process.pid}) ended with exit"
                f" code {self._process.exitcode} before sending its result"
            ) from None


@contextmanager
def call_aside(
    purpose: str, fn: Callable[..., T], *args: Any, niceness: int = 0
) -> Iterator[Pending[T]]:
    """`fn(*args)` on a spawned worker process from now on; the block gets its Pending. On
    leaving the block the worker is gone: joined after a result, killed on any error.
    `niceness` lowers the worker's priority (work ahead that must not slow this process)."""
    context = multiprocessing.get_context("spawn")
    take, give = context.Pipe(duplex=False)  # the call, to the worker
    receive, send = context.Pipe(duplex=False)  # its outcome, from the worker
    process = context.Process(
        target=_call_and_send, args=(take, send, niceness), name=purpose, daemon=True
    )
    process.start()
    take.close()
    send.close()  # the worker holds the only sending end: its death ends recv() with EOFError
    # The call's arguments (megabytes of closes) go through a pipe the worker reads only once
    # it has started and imported what unpickling them needs (~0.6-1.2 s): written from a
    # thread, so that this process goes on at once. As Process arguments they were written by
    # start() itself, which waited for the worker's reading all that while.
    giving = threading.Thread(target=_give, args=(give, (fn, args)), name=f"{purpose}: give")
    giving.start()
    try:
        yield Pending(process, receive, purpose)
        process.join(EXIT_WAIT_S)
    finally:
        receive.close()
        if process.is_alive():  # the block failed (or the worker hangs): end it now
            process.kill()
        process.join()
        giving.join()  # written, or broken off by the worker's end
        give.close()


def _give(give: Connection, call: tuple[Callable[..., Any], tuple[Any, ...]]) -> None:
    try:
        give.send(call)
    except (BrokenPipeError, OSError):  # the worker ended first: Pending.result() says so
        pass


def _call_and_send(take: Connection, send: Connection, niceness: int) -> None:
    # Ctrl-C reaches the whole process group: the caller stops and ends this worker, which
    # would otherwise print a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if niceness:
        os.nice(niceness)
    try:
        fn, args = take.recv()
        outcome = (True, fn(*args))
    except Exception as error:  # the caller raises it, as if it had made the call itself
        outcome = (False, error)
    finally:
        take.close()
    try:
        send.send(outcome)
    except (BrokenPipeError, OSError):  # the caller has gone on without it (it failed)
        pass
    finally:
        send.close()
