"""Fetching prices: the per-ticker task shared by every flow, and the flow behind `fetch`.

Each ticker is its own task run; a failure is collected with its reason instead of failing the
flow, so one bad ticker never costs the good ones. Network retries (with backoff) and the cache
fallback live in the library, so they work, and are tested, without Prefect.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from lstm_pipeline import data
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import InputError, describe_failures


def transient_only(task: Any, task_run: TaskRun, state: State) -> bool:
    """Retry network trouble, never bad input: a broken file stays broken."""
    return not isinstance(state.result(raise_on_failure=False), InputError)


@task(cache_policy=NO_CACHE, task_run_name="fetch-{ticker}")
def fetch(
    ticker: str, cfg: DataConfig, min_rows: int = data.MIN_ROWS, purpose: str = "a price series"
) -> pd.DataFrame:
    return data.load_prices(ticker, cfg, min_rows, purpose)


@task(cache_policy=NO_CACHE, task_run_name="cache-{ticker}")
def fill_cache(ticker: str, cfg: DataConfig) -> dict[str, Any]:
    return data.fill_cache(ticker, cfg)


def each_ticker(
    ticker_task: Any, cfg: DataConfig, *args: Any
) -> tuple[dict[str, Any], dict[str, BaseException]]:
    """`ticker_task(ticker, cfg, *args)` per ticker: (results, failures), both by ticker."""
    states = {t: ticker_task(t, cfg, *args, return_state=True) for t in cfg.tickers}
    outcomes = {t: state.result(raise_on_failure=False) for t, state in states.items()}
    results = {t: r for t, r in outcomes.items() if not isinstance(r, BaseException)}
    failures = {t: r for t, r in outcomes.items() if isinstance(r, BaseException)}
    return results, failures


@flow(name="lstm-fetch", flow_run_name=lambda: f"fetch-{date.today()}")
def fetch_flow(cfg: DataConfig) -> dict[str, Any]:
    """Update (yfinance) or import (sample, csv) each ticker's cache; failures are listed."""
    summary, failures = each_ticker(fill_cache, cfg)
    return {"tickers": summary, "failed": describe_failures(failures)}
