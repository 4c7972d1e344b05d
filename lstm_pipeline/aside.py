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
import signal
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


def worth_a_process(windows: int) -> bool:
    """Whether a call over this many windows should go to a worker process: above ASIDE_FROM,
    and only where this process may start one (a daemonic one, such as a Dask worker, may not)."""
    return windows >= ASIDE_FROM and not multiprocessing.current_process().daemon


class Pending(Generic[T]):
    """The call running on the worker; `result()` waits for what it returned (or raises what it
    raised, or WorkerDiedError when it died first)."""

    def __init__(self, process: Any, receive: Connection, purpose: str) -> None:
        self._process, self._receive, self._purpose = process, receive, purpose

    def result(self) -> T:
        try:
            ok, value = self._receive.recv()
        except (EOFError, OSError):  # only the worker held the other end: it is gone
            self._process.join(EXIT_WAIT_S)
            raise WorkerDiedError(
                f"{self._purpose}: the worker process (pid {self._process.pid}) ended with exit"
                f" code {self._process.exitcode} before sending its result"
            ) from None
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


@contextmanager
def call_aside(purpose: str, fn: Callable[..., T], *args: Any) -> Iterator[Pending[T]]:
    """`fn(*args)` on a spawned worker process from now on; the block gets its Pending. On
    leaving the block the worker is gone: joined after a result, killed on any error."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_call_and_send, args=(send, fn, args), name=purpose, daemon=True
    )
    process.start()
    send.close()  # the worker holds the only sending end: its death ends recv() with EOFError
    try:
        yield Pending(process, receive, purpose)
        process.join(EXIT_WAIT_S)
    finally:
        receive.close()
        if process.is_alive():  # the block failed (or the worker hangs): end it now
            process.kill()
        process.join()


def _call_and_send(send: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # Ctrl-C reaches the whole process group: the caller stops and ends this worker, which
    # would otherwise print a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        outcome = (True, fn(*args))
    except Exception as error:  # the caller raises it, as if it had made the call itself
        outcome = (False, error)
    try:
        send.send(outcome)
    except (BrokenPipeError, OSError):  # the caller has gone on without it (it failed)
        pass
    finally:
        send.close()
