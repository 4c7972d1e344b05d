"""Fetching prices: the per-ticker task shared by every flow, and the flow behind `fetch`.

Each ticker is its own task run, submitted to the flow's task runner (threads, or Dask workers),
so tickers load concurrently; a failure is collected with its reason instead of failing the
flow, so one bad ticker never costs the good ones. Network retries (with backoff) and the cache
fallback live in the library, so they work, and are tested, without Prefect.
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

from flows.progress import wait_counting
from lstm_pipeline import cache, data
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
    cfg: DataConfig, purpose: str, *args: Any
) -> tuple[dict[str, pd.DataFrame], dict[str, BaseException]]:
    """load_each with `fetch`, where a ticker whose download failed falls back on its disk
    cache (fetch_stale, with a warning) and fails only when it has none."""
    if cfg.source == "yfinance":  # the other sources never write the cache here
        data.check_cache_writable(cfg)
    return load_each(fetch, cfg, purpose, *args, fallback=fetch_stale)


@flow(name="lstm-fetch", flow_run_name=lambda: f"fetch-{date.today()}")
def fetch_flow(cfg: DataConfig) -> dict[str, Any]:
    """Update (yfinance) or import (sample, csv) each ticker's cache; failures are listed."""
    data.check_cache_writable(cfg)
    summary, failures = load_each(fill_cache, cfg, "fetch")
    return {"tickers": summary, "failed": describe_failures(failures)}
