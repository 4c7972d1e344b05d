"""Daily prices: three sources behind `load_prices`, split/dividend adjustment, validation, cache.

Never imports torch: the batch forecast path uses this module.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import DataValidationError, InputError

log = logging.getLogger(__name__)

PRICE_COLUMNS = ("Open", "High", "Low", "Close")
FEATURES = (*PRICE_COLUMNS, "Volume")  # model input order; stored in the ONNX metadata
_TICKER = re.compile(r"^[A-Z0-9.\-^=]{1,15}$")


def validate_ticker(ticker: str) -> str:
    """Upper-cased ticker, or InputError; tickers become file names, so this runs first."""
    symbol = ticker.strip().upper()
    if not _TICKER.match(symbol):
        raise InputError(
            f"invalid ticker {ticker!r}: use 1-15 letters, digits or . - ^ = (e.g. AAPL, BRK-B)"
        )
    return symbol


def load_prices(ticker: str, cfg: DataConfig) -> pd.DataFrame:
    """Adjusted, validated daily bars of one ticker from `cfg.source`, cut to [start, end].

    Returns a frame indexed by date with columns FEATURES (OHLC adjusted by Adj Close / Close).
    """
    ticker = validate_ticker(ticker)
    if cfg.source == "sample":
        raw, origin = read_sample(ticker)
    elif cfg.source == "csv":
        path = Path(cfg.data_dir or ".") / f"{ticker}.csv"
        raw, origin = read_price_csv(path, ticker), f"file {path}"
    else:
        raw, origin = download_yfinance(ticker, cfg.start, cfg.end), "yfinance"
    prices = validate_prices(adjust_ohlc(raw, f"{ticker}: {origin}"), ticker, origin)
    prices = prices.loc[_as_ts(cfg.start) : _as_ts(cfg.end)]
    if prices.empty:
        raise DataValidationError(
            f"{ticker}: {origin} has no rows between {cfg.start or 'start'} and {cfg.end or 'end'}"
        )
    log.info(
        "%s: %d rows %s..%s from %s",
        ticker,
        len(prices),
        _day(prices.index[0]),
        _day(prices.index[-1]),
        origin,
    )
    return prices


def read_sample(ticker: str) -> tuple[pd.DataFrame, str]:
    """The bundled real daily bars (2010 onward) of one of the sample tickers."""
    folder = resources.files("lstm_pipeline") / "sample_data"
    name = f"{ticker}.csv.gz"
    if not (folder / name).is_file():
        have = sorted(p.name.split(".")[0] for p in folder.iterdir() if p.name.endswith(".gz"))
        raise InputError(f"{ticker}: not in the sample source (it has {', '.join(have)})")
    with resources.as_file(folder / name) as path:
        return read_price_csv(path, ticker), f"sample file {name}"


def read_price_csv(path: Path, ticker: str) -> pd.DataFrame:
    """A yfinance-layout CSV (`Date,Open,High,Low,Close[,Adj Close],Volume`) as a raw frame."""
    if not path.is_file():
        raise InputError(f"{ticker}: file {path} not found")
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataValidationError(
            f"{ticker}: file {path} is not a readable CSV ({first_line})"
        ) from None
    if "Date" not in frame.columns:
        raise DataValidationError(f"{ticker}: file {path} has no Date column")
    dates = pd.to_datetime(frame["Date"], format="ISO8601", errors="coerce")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna())[0])
        raise DataValidationError(
            f"{ticker}: file {path} row {row + 2}: bad date {frame['Date'].iloc[row]!r}"
        )
    return frame.drop(columns="Date").set_index(pd.DatetimeIndex(dates, name="Date"))


def download_yfinance(ticker: str, start: date | None, end: date | None) -> pd.DataFrame:
    """The project's one call to Yahoo: raw daily bars with `Adj Close`, or InputError if none."""
    import yfinance as yf  # imported here: it is slow to import and only this source needs it

    frame = yf.download(
        ticker,
        start=start.isoformat() if start else None,
        # yfinance's end is exclusive; ours is inclusive
        end=(end + timedelta(days=1)).isoformat() if end else None,
        period=None if start else "max",
        interval="1d",
        auto_adjust=False,  # keep Adj Close; we adjust OHLC ourselves, like the csv source
        actions=False,
        multi_level_index=False,
        progress=False,
        threads=False,
    )
    if frame is None or frame.empty:  # yf.download logs failures and returns an empty frame
        raise InputError(f"{ticker}: yfinance returned no data (unknown ticker or network error)")
    if isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is not None:
        frame.index = frame.index.tz_localize(None)
    frame.index = frame.index.normalize()
    frame.index.name = "Date"
    return frame


def adjust_ohlc(raw: pd.DataFrame, where: str = "prices") -> pd.DataFrame:
    """OHLC scaled by `Adj Close / Close` so splits and dividends are not jumps; FEATURES only."""
    missing = [c for c in FEATURES if c not in raw.columns]
    if missing:
        raise DataValidationError(f"{where}: missing column(s) {', '.join(missing)}")
    frame = raw.loc[:, list(FEATURES)].apply(pd.to_numeric, errors="coerce").astype("float64")
    if "Adj Close" in raw.columns:
        factor = pd.to_numeric(raw["Adj Close"], errors="coerce") / frame["Close"]
        frame[list(PRICE_COLUMNS)] = frame[list(PRICE_COLUMNS)].mul(factor, axis=0)
    return frame


def validate_prices(prices: pd.DataFrame, ticker: str, origin: str) -> pd.DataFrame:
    """The frame unchanged, or DataValidationError naming ticker, origin and the first bad date.

    Rules: dates unique and increasing, no NaN, prices > 0, volume >= 0, at least 2 rows.
    """
    where = f"{ticker}: {origin}"
    dates = prices.index
    if dates.has_duplicates:
        raise DataValidationError(f"{where}: date {_day(dates[dates.duplicated()][0])} repeats")
    if not dates.is_monotonic_increasing:
        bad = int(np.flatnonzero(np.diff(dates.to_numpy()) < np.timedelta64(0))[0]) + 1
        raise DataValidationError(
            f"{where}: dates not increasing at {_day(dates[bad])} (after {_day(dates[bad - 1])})"
        )
    checks: list[tuple[pd.Series, str]] = [
        (prices.isna().any(axis=1), "missing or non-numeric value"),
        ((prices[list(PRICE_COLUMNS)] <= 0).any(axis=1), "non-positive price"),
        (prices["Volume"] < 0, "negative volume"),
    ]
    for bad_rows, what in checks:
        if bad_rows.any():
            raise DataValidationError(f"{where}: {what} on {_day(bad_rows.idxmax())}")
    if len(prices) < 2:
        raise DataValidationError(f"{where}: only {len(prices)} row(s)")
    return prices


def require_rows(prices: pd.DataFrame, ticker: str, needed: int, why: str) -> None:
    """InputError unless the series has at least `needed` rows (for `why`, e.g. one window)."""
    if len(prices) < needed:
        raise DataValidationError(
            f"{ticker}: {len(prices)} rows, but {needed} are needed for {why}"
            f" ({_day(prices.index[0])} to {_day(prices.index[-1])})"
        )


def latest_window(prices: pd.DataFrame, window: int) -> np.ndarray:
    """The last `window` rows of FEATURES as float32 [window, n_features]."""
    return prices.loc[:, list(FEATURES)].to_numpy(np.float32)[-window:]


def cache_path(cache_dir: str | Path, ticker: str) -> Path:
    return Path(cache_dir) / f"{validate_ticker(ticker)}.parquet"


def save_cache(prices: pd.DataFrame, cache_dir: str | Path, ticker: str) -> Path:
    """Write one ticker's prices to the parquet cache atomically; returns the path."""
    path = cache_path(cache_dir, ticker)
    write_atomic(path, lambda tmp: prices.to_parquet(tmp))
    return path


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call `write(tmp)` on a temp file beside `path`, then rename it over `path`.

    A crash mid-write leaves the previous file intact: readers see the old or the new, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _as_ts(day: date | None) -> pd.Timestamp | None:
    return pd.Timestamp(day) if day else None


def _day(ts: Any) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")
