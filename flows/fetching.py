"""Fetching prices: the tasks shared by every flow, and the flow behind `fetch`.

A yfinance ticker is its own task run, all submitted at once (retries and backoff are per
download; a failed one falls back on its disk cache). A local source (`sample`, `csv`) is read
in tasks of loading.LOCAL_BATCH tickers, as a task run costs more than reading a file: one per
ticker made a 5,000-ticker forecast mostly orchestration. `each_batch` says how those run.
Either way a failure is kept with its ticker and reason instead of failing the flow, so one bad
ticker never costs the good ones. Retries and the cache fallback live in the library, so they work,
and are tested, without Prefect.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State

from flows import runners
from flows.progress import Counter, wait_counting
from lstm_pipeline import cache, data, loading
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import (
    DownloadError,
    InputError,
    NoDataError,
    describe_failures,
    require_survivors,
)

# A yfinance fetch is reused for this long at most, and only the same day for open ranges
# (cache.fetch_key names the date), so a rerun on the same data skips the network.
FETCH_CACHE_EXPIRATION = timedelta(hours=12)
DOWNLOAD_FAILURES = (DownloadError, NoDataError)  # the disk cache may stand in


def transient_only(task: Any, task_run: TaskRun, state: State) -> bool:
    """Retry network trouble, never bad input: a broken file stays broken."""
    return not isinstance(state.result(raise_on_failure=False), InputError)


def fetch_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Key the fetch on ticker, range, interval and source, never on the frames it returns."""
    p = parameters
    return cache.fetch_key(p["ticker"], p["cfg"], p.get("min_rows", data.MIN_ROWS), date.today())


@task(
    task_run_name="fetch-{ticker}",
    cache_key_fn=fetch_cache_key,
    cache_expiration=FETCH_CACHE_EXPIRATION,
)
def fetch(
    ticker: str, cfg: DataConfig, min_rows: int = data.MIN_ROWS, purpose: str = "a price series"
) -> pd.DataFrame:
    # A failed download fails here instead of falling back on the disk cache, so only fresh
    # prices are ever reused: a stale fallback kept for FETCH_CACHE_EXPIRATION would outlive
    # the outage. fetch_each falls back through fetch_stale, which is never reused.
    return data.load_prices(ticker, cfg, min_rows, purpose, allow_stale=False)


@task(cache_policy=NO_CACHE, task_run_name="fetch-{ticker}-from-cache")
def fetch_stale(
    ticker: str, cfg: DataConfig, min_rows: int = data.MIN_ROWS, purpose: str = "a price series"
) -> pd.DataFrame:
    return data.load_stale(ticker, cfg, min_rows, purpose)


@task(cache_policy=NO_CACHE, task_run_name="cache-{ticker}")
def fill_cache(ticker: str, cfg: DataConfig) -> dict[str, Any]:
    return data.fill_cache(ticker, cfg)


@task(cache_policy=NO_CACHE, task_run_name="load-{label}-on-{workers}-processes")
def load_on_processes(
    label: str,
    chunks: list[DataConfig],
    workers: int,
    min_rows: int,
    purpose: str,
    keep_last: int | None,
    on_chunk: Any,
) -> tuple[dict[str, pd.DataFrame], dict[str, Exception]]:
    return loading.load_in_processes(chunks, workers, min_rows, purpose, keep_last, on_chunk)


@task(cache_policy=NO_CACHE, task_run_name="load-{label}")
def load_batch(
    label: str, cfg: DataConfig, min_rows: int, purpose: str, keep_last: int | None
) -> tuple[dict[str, pd.DataFrame], dict[str, Exception]]:
    return data.load_many(cfg, min_rows, purpose, keep_last)


def each_batch(
    cfg: DataConfig, min_rows: int, purpose: str, keep_last: int | None
) -> tuple[dict[str, pd.DataFrame], dict[str, BaseException]]:
    """load_batch per loading.LOCAL_BATCH of cfg's tickers: (results, failures), both by ticker
    in cfg's order. Reading and validating is CPU-bound pandas, and threads fighting over the
    GIL took twice as long as taking turns (500 files: 6.1 s vs 3.3 s). So on a thread runner
    the batches take turns, or from loading.PROCESSES_FROM tickers run on one worker process
    per core (a load the command started ahead, if it did); on Dask they are submitted at
    once, to its workers."""
    configs = loading.chunked(cfg)
    chunks = [c.tickers for c in configs]
    labels = [f"{chunk[0]}..{chunk[-1]}" if len(chunk) > 1 else chunk[0] for chunk in chunks]
    workers = loading.worker_count(configs)
    counter = Counter("tickers", len(cfg.tickers))
    if not runners.on_threads():
        futures = [
            load_batch.submit(label, c, min_rows, purpose, keep_last)
            for label, c in zip(labels, configs, strict=True)
        ]
        wait_counting(futures, "tickers", sizes=[len(chunk) for chunk in chunks])
        outcomes = [future.result() for future in futures]  # a batch never fails: its tickers do
    elif loading.on_processes(cfg):
        label = f"{cfg.tickers[0]}..{cfg.tickers[-1]}"
        args = (label, configs, workers, min_rows, purpose, keep_last, counter)
        outcomes = [load_on_processes(*args)]
    else:
        outcomes = []
        for label, c in zip(labels, configs, strict=True):
            outcomes.append(load_batch(label, c, min_rows, purpose, keep_last))
            counter(len(c.tickers))
    results: dict[str, pd.DataFrame] = {}
    failures: dict[str, BaseException] = {}
    for loaded, failed in outcomes:
        results.update(loaded)
        failures.update(failed)
    return results, failures


def each_ticker(
    ticker_task: Any, cfg: DataConfig, *args: Any
) -> tuple[dict[str, Any], dict[str, BaseException]]:
    """`ticker_task(ticker, cfg, *args)` per ticker, all submitted at once: (results, failures),
    both by ticker in cfg's order."""
    futures = {t: ticker_task.submit(t, cfg, *args) for t in cfg.tickers}
    wait_counting(list(futures.values()), "tickers")
    outcomes = {t: future.result(raise_on_failure=False) for t, future in futures.items()}
    results = {t: r for t, r in outcomes.items() if not isinstance(r, BaseException)}
    failures = {t: r for t, r in outcomes.items() if isinstance(r, BaseException)}
    return results, failures


def load_each(
    ticker_task: Any, cfg: DataConfig, purpose: str, *args: Any, fallback: Any = None
) -> tuple[dict[str, Any], dict[str, BaseException]]:
    """each_ticker, where `fallback(ticker, cfg, *args)` stands in for a ticker whose download
    failed, if given; then go on with a warning, or fail when too few tickers are left
    (cfg.min_tickers) or too many failed (cfg.max_failure_ratio)."""
    results, failures = each_ticker(ticker_task, cfg, *args)
    outage = tuple(t for t, e in failures.items() if isinstance(e, DOWNLOAD_FAILURES))
    if fallback is not None and outage:
        stood_in, _ = each_ticker(fallback, cfg.model_copy(update={"tickers": outage}), *args)
        found = results | stood_in
        results = {t: found[t] for t in cfg.tickers if t in found}  # in cfg's order
        failures = {t: e for t, e in failures.items() if t not in stood_in}
    require_survivors(results, failures, cfg.min_tickers, purpose, cfg.max_failure_ratio)
    return results, failures


def fetch_each(
    cfg: DataConfig,
    purpose: str,
    min_rows: int = data.MIN_ROWS,
    why: str = "a price series",
    keep_last: int | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, BaseException]]:
    """Each ticker's prices (at least `min_rows`, needed for `why`; only the last `keep_last`
    rows when given), or its failure; then go on with a warning, or fail when too few tickers
    are left (cfg.min_tickers) or too many failed (cfg.max_failure_ratio). A yfinance ticker
    whose download failed falls back on its disk cache (fetch_stale, with a warning) and fails
    only when it has none."""
    if cfg.source != "yfinance":  # local files: no network to retry, no cache to fall back on
        results, failures = each_batch(cfg, min_rows, why, keep_last)
        require_survivors(results, failures, cfg.min_tickers, purpose, cfg.max_failure_ratio)
        return results, failures
    data.check_cache_writable(cfg)
    results, failures = load_each(fetch, cfg, purpose, min_rows, why, fallback=fetch_stale)
    return {t: data.last_rows(prices, keep_last) for t, prices in results.items()}, failures


@flow(name="lstm-fetch", flow_run_name=lambda: f"fetch-{date.today()}")
def fetch_flow(cfg: DataConfig) -> dict[str, Any]:
    """Update (yfinance) or import (sample, csv) each ticker's cache; failures are listed."""
    data.check_cache_writable(cfg)
    summary, failures = load_each(fill_cache, cfg, "fetch")
    return {"tickers": summary, "failed": describe_failures(failures)}
