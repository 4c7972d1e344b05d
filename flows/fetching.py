"""Fetching prices: the retried task shared by every flow, and the flow behind `fetch`."""

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
from lstm_pipeline.errors import InputError


def transient_only(task: Any, task_run: TaskRun, state: State) -> bool:
    """Retry network trouble, never bad input: a broken file stays broken."""
    return not isinstance(state.result(raise_on_failure=False), InputError)


@task(
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    retry_condition_fn=transient_only,
    cache_policy=NO_CACHE,
    task_run_name="fetch-{ticker}",
)
def fetch(ticker: str, cfg: DataConfig) -> pd.DataFrame:
    return data.load_prices(ticker, cfg)


@task(cache_policy=NO_CACHE, task_run_name="cache-{ticker}")
def save_to_cache(prices: pd.DataFrame, cache_dir: str, ticker: str) -> str:
    return str(data.save_cache(prices, cache_dir, ticker))


@flow(name="lstm-fetch", flow_run_name=lambda: f"fetch-{date.today()}")
def fetch_flow(cfg: DataConfig) -> dict[str, dict[str, Any]]:
    """Load, adjust and validate each ticker, then write it to the parquet cache."""
    summary = {}
    for ticker in cfg.tickers:
        prices = fetch(ticker, cfg)
        summary[ticker] = {
            "rows": len(prices),
            "first": prices.index[0].date().isoformat(),
            "last": prices.index[-1].date().isoformat(),
            "path": save_to_cache(prices, cfg.cache_dir, ticker),
        }
    return summary
