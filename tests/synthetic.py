"""Seeded synthetic prices: importable without conftest's side effects (CLI subprocesses use it)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_prices(n: int = 400, seed: int = 0, start: str = "2020-01-01") -> pd.DataFrame:
    """Seeded synthetic daily bars in yfinance layout (with Adj Close), Date as a column."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    log_close = np.log(50 + 10 * seed) + 0.05 * np.sin(t / 15) + np.cumsum(rng.normal(0, 0.01, n))
    close = np.exp(log_close)
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    return pd.DataFrame(
        {
            "Date": pd.bdate_range(start, periods=n).strftime("%Y-%m-%d"),
            "Open": open_,
            "High": high,
            "Low": low,
            "Close": close,
            "Adj Close": close * 0.98,  # a constant dividend adjustment
            "Volume": rng.integers(1_000_000, 5_000_000, n),
        }
    )
