"""Many local price files at once: `data.load_many` over worker processes.

Reading and validating a file is CPU-bound pandas (~7 ms for 10 years of bars), and threads
take turns on the GIL, so a universe loads on one core however many threads ask. Worker
processes use every core: 5,000 files on 2 cores in about half the time. Each worker takes
chunks of tickers in order and sends back their prices, their failures (each ticker still fails
alone) and the lines it logged, which the caller's logger then emits, so a run's per-ticker
lines and warnings are the same as from one process.

A command whose flow will load this way starts the same load as its first act (`ahead`), on
the core that its imports leave idle; the flow takes it where it would load (`load_in_processes`
with the same arguments). Anything else is only a lost head start: the flow loads itself.
This module imports neither pandas nor torch, so a command can start the load at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lstm_pipeline.config import DataConfig

if TYPE_CHECKING:  # pandas is the workers' import: this module stays light for a command
    import pandas as pd

    Loaded = tuple[dict[str, pd.DataFrame], dict[str, Exception]]

log = logging.getLogger(__name__)

# Tickers per task for a local source: at ~10 ms a file, a task of 100 costs ~1 s, against
# ~30 ms of Prefect's bookkeeping per task run; 5,000 tickers make 50 task runs.
LOCAL_BATCH = 100
# From this many local tickers a thread runner's flow loads them on worker processes, one per
# core: starting them costs ~1 s, half of 500 files' loading.
PROCESSES_FROM = 500
AHEAD_NICENESS = 10


def chunked(cfg: DataConfig) -> list[DataConfig]:
    """cfg for each LOCAL_BATCH of its tickers, in order."""
    tickers = cfg.tickers
    return [
        cfg.model_copy(update={"tickers": tickers[i : i + LOCAL_BATCH]})
        for i in range(0, len(tickers), LOCAL_BATCH)
    ]


def worker_count(chunks: Sequence[DataConfig]) -> int:
    """One worker process per core, never more than there are chunks."""
    return min(os.cpu_count() or 1, len(chunks))


def on_processes(cfg: DataConfig) -> bool:
    """Whether a thread runner's flow loads cfg's tickers on worker processes."""
    return len(cfg.tickers) >= PROCESSES_FROM and worker_count(chunked(cfg)) > 1


@dataclass
class _Started:
    """A load begun on worker processes, its chunks' futures in order."""

    pool: ProcessPoolExecutor
    futures: list[Future[Any]]


_started: dict[tuple[Any, ...], _Started] = {}  # by _key of its arguments


def _key(chunks: Sequence[DataConfig], *args: Any) -> tuple[Any, ...]:
    return (tuple(chunk.model_dump_json() for chunk in chunks), *args)


@contextmanager
def ahead(
    cfg: DataConfig, min_rows: int, purpose: str, keep_last: int | None = None
) -> Iterator[None]:
    """Within it, cfg's local tickers load on worker processes, as the flow inside will ask
    (when it will: a local source, enough tickers, cores); at its end a load the flow did not
    take is stopped, its workers killed, whether the command succeeded or failed."""
    if cfg.source == "yfinance" or not on_processes(cfg):
        yield
        return
    chunks = chunked(cfg)
    workers = worker_count(chunks)
    key = _key(chunks, workers, min_rows, purpose, keep_last)
    try:
        started = _submitted(chunks, workers, min_rows, purpose, keep_last, niceness=AHEAD_NICENESS)
        _started[key] = _Started(*started)
    except Exception:  # no processes to be had: the flow meets that itself, and reports it
        log.debug("no load ahead", exc_info=True)
    try:
        yield
    finally:
        left = _started.pop(key, None)
        if left is not None:
            _stop(left.pool)


def load_in_processes(
    chunks: list[DataConfig],
    workers: int,
    min_rows: int,
    purpose: str,
    keep_last: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Loaded:
    """load_many of each chunk (a config naming some tickers) on `workers` spawned processes:
    (prices, failures) by ticker in the chunks' order; `on_chunk(tickers in it)` as each
    chunk's result arrives, in order. A load `ahead` began with these very arguments is taken
    as far as it got; the chunks it did not deliver (a worker died) are loaded anew."""
    loaded: dict[str, pd.DataFrame] = {}
    failures: dict[str, Exception] = {}
    args = (min_rows, purpose, keep_last)
    started = _take(_key(chunks, workers, *args))
    done = 0
    if started is not None:
        try:
            done = _gather(chunks, started.futures, loaded, failures, on_chunk, fallible=True)
        finally:
            _stop(started.pool)
    if done < len(chunks):
        rest = chunks[done:]
        pool, futures = _submitted(rest, min(workers, len(rest)), *args)
        with pool:
            _gather(rest, futures, loaded, failures, on_chunk)
    return loaded, failures


def _take(key: tuple[Any, ...]) -> _Started | None:
    """The load started with `key`, if any; any other started load is stopped, unwanted."""
    started = _started.pop(key, None)
    for other in list(_started):
        _stop(_started.pop(other).pool)
    return started


def _submitted(
    chunks: Sequence[DataConfig], workers: int, *args: Any, niceness: int = 0
) -> tuple[ProcessPoolExecutor, list[Future[Any]]]:
    # spawn, not fork: the caller runs Prefect's threads, which a fork would copy mid-flight
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(niceness,)
    )
    try:
        return pool, [pool.submit(_load_logged, chunk, *args) for chunk in chunks]
    except BaseException:
        _stop(pool)
        raise


def _gather(
    chunks: Sequence[DataConfig],
    futures: Sequence[Future[Any]],
    loaded: dict[str, pd.DataFrame],
    failures: dict[str, Exception],
    on_chunk: Callable[[int], None] | None,
    fallible: bool = False,
) -> int:
    """Each chunk's result into `loaded` and `failures`, its lines logged here, in order: the
    number of chunks gathered, up to the first that failed when `fallible` (else it raises)."""
    for done, (chunk, future) in enumerate(zip(chunks, futures, strict=True)):
        try:
            prices, failed, records = future.result()
        except Exception:  # a dead worker: load_many itself keeps every ticker's failure
            if not fallible:
                raise
            return done
        for record in records:
            logging.getLogger(record.name).handle(record)
        loaded.update(prices)
        failures.update(failed)
        if on_chunk is not None:
            on_chunk(len(chunk.tickers))
    return len(chunks)


def _stop(pool: ProcessPoolExecutor) -> None:
    """The pool's workers killed mid-chunk (shutting down alone would wait for their work)."""
    processes = list((pool._processes or {}).values())  # no public kill before 3.14
    # the pool's own thread reaps its workers too; a first shutdown forgets it, so the second
    # would not wait for it, and a worker could still look alive after this returns
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join()
    if manager is not None:
        manager.join()
    pool.shutdown(wait=True)


def _start_worker(niceness: int) -> None:
    """Ctrl-C reaches the terminal's whole process group: the command reports it and kills its
    workers, which must not print a traceback of their own meanwhile. A load ahead yields the
    cores to the command's own imports, which its flow waits for first (`niceness`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(niceness)


def _load_logged(
    cfg: DataConfig, min_rows: int, purpose: str, keep_last: int | None
) -> tuple[dict[str, pd.DataFrame], dict[str, Exception], list[logging.LogRecord]]:
    from lstm_pipeline.data import load_many  # in the worker: pandas stays out of the command

    with _records() as records:
        prices, failures = load_many(cfg, min_rows, purpose, keep_last)
    return prices, failures, records


@contextmanager
def _records() -> Iterator[list[logging.LogRecord]]:
    """The records the library logs at INFO and above meanwhile, as plain messages (picklable)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)

    def keep(record: logging.LogRecord) -> None:
        record.msg, record.args, record.exc_info = record.getMessage(), None, None
        records.append(record)

    handler.emit = keep  # type: ignore[method-assign]
    library = logging.getLogger("lstm_pipeline")
    level, library.level = library.level, logging.INFO
    library.addHandler(handler)
    try:
        yield records
    finally:
        library.removeHandler(handler)
        library.setLevel(level)
