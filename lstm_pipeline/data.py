"""Daily prices: three sources behind `load_prices`, split/dividend adjustment, the yfinance cache.

`sample` and `csv` are read directly. `yfinance` goes through the parquet cache: download what
is missing, validate, write atomically, load; when the download fails the cache is used with a
warning saying how stale it is. Never imports torch: the batch forecast path uses this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_pipeline import cache, yahoo
from lstm_pipeline.config import DataConfig
from lstm_pipeline.csv_files import price_files, read_price_csv, shown
from lstm_pipeline.errors import (
    DataValidationError,
    DownloadError,
    InputError,
    NoDataError,
)
from lstm_pipeline.files import check_can_create_in, write_atomic
from lstm_pipeline.validate import (
    ADJ_CLOSE,
    FEATURES,
    PRICE_COLUMNS,
    check_adjusted,
    column_index,
    day,
    numeric_columns,
    plain_values,
    require_columns,
    require_rows,
    validate_prices,
    validate_ticker,
)

log = logging.getLogger(__name__)

MIN_ROWS = 2  # the least any use of a series needs; training and forecasting ask for more


def load_prices(
    ticker: str,
    cfg: DataConfig,
    min_rows: int = MIN_ROWS,
    purpose: str = "a price series",
    allow_stale: bool = True,
) -> pd.DataFrame:
    """Adjusted, validated bars of one ticker from `cfg.source`, cut to [start, end].

    Returns a frame indexed by date with columns FEATURES (OHLC adjusted by Adj Close / Close);
    DataValidationError when fewer than `min_rows` remain (they are needed for `purpose`).
    A failed yfinance update falls back on the cache with a warning unless not `allow_stale`.
    """
    ticker = validate_ticker(ticker)
    if cfg.source == "yfinance":
        prices = refresh_cache(ticker, cfg, allow_stale).prices
    else:
        raw, origin = read_local(ticker, cfg)
        prices = check_bars(raw, ticker, origin, cfg).prices
    return select_dates(prices, ticker, cfg, min_rows, purpose)


def load_many(
    cfg: DataConfig,
    min_rows: int = MIN_ROWS,
    purpose: str = "a price series",
    keep_last: int | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, Exception]]:
    """load_prices for each of cfg.tickers, a failure kept with its ticker instead of raised (one
    bad file never costs the others): (prices, failures), both in cfg's order. With
    `keep_last`, only each series' last rows are kept (a forecast needs one window, and 5,000
    full histories would hold ~600 MB)."""
    loaded: dict[str, pd.DataFrame] = {}
    failures: dict[str, Exception] = {}
    for ticker in cfg.tickers:
        try:
            prices = load_prices(ticker, cfg, min_rows, purpose)
        except Exception as exc:  # any failure is this ticker's; the flow reports each
            failures[ticker] = exc
        else:
            loaded[ticker] = last_rows(prices, keep_last)
    return loaded, failures


def last_rows(prices: pd.DataFrame, keep: int | None) -> pd.DataFrame:
    """The last `keep` rows as a frame of their own (a slice would keep the whole history
    alive), or all of them when `keep` is None."""
    return prices if keep is None else prices.iloc[-keep:].copy()


def select_dates(
    prices: pd.DataFrame, ticker: str, cfg: DataConfig, min_rows: int, purpose: str
) -> pd.DataFrame:
    """The rows in [cfg.start, cfg.end], at least `min_rows` of them."""
    selected = prices.loc[_as_ts(cfg.start) : _as_ts(cfg.end)]
    if selected.empty:
        raise DataValidationError(
            f"{ticker}: {prices.attrs['origin']}: no rows between {cfg.start or 'start'}"
            f" and {cfg.end or 'end'} (it has {day(prices.index[0])} to {day(prices.index[-1])})"
        )
    require_rows(selected, ticker, min_rows, purpose)
    log.info(
        "%s: %d rows %s..%s from %s",
        ticker,
        len(selected),
        day(selected.index[0]),
        day(selected.index[-1]),
        prices.attrs["origin"],
    )
    return selected


def read_local(ticker: str, cfg: DataConfig) -> tuple[pd.DataFrame, str]:
    """Raw bars and where they came from, for the `sample` and `csv` sources."""
    if cfg.source == "sample":
        return read_sample(ticker)
    folder = Path(cfg.data_dir or ".")
    path = price_files(folder, warn=False).get(ticker, folder / f"{ticker}.csv")
    return read_price_csv(path, ticker), f"file {shown(path)}"


def source_location(cfg: DataConfig) -> str:
    """The folder the prices are read from: the csv folder, the bundled sample or the cache."""
    if cfg.source == "csv":
        return str(Path(cfg.data_dir or ".").resolve())
    if cfg.source == "sample":
        return str(resources.files("lstm_pipeline") / "sample_data")
    return str((cfg.cache_root() / cfg.interval).resolve())


def read_sample(ticker: str) -> tuple[pd.DataFrame, str]:
    """The bundled real daily bars (2010 onward) of one of the sample tickers."""
    folder = resources.files("lstm_pipeline") / "sample_data"
    name = f"{ticker}.csv.gz"
    if not (folder / name).is_file():
        have = sorted(p.name.split(".")[0] for p in folder.iterdir() if p.name.endswith(".gz"))
        raise InputError(f"{ticker}: not in the sample source (it has {', '.join(have)})")
    with resources.as_file(folder / name) as path:
        return read_price_csv(path, ticker), f"sample file {name}"


@dataclass(frozen=True)
class CheckedBars:
    bars: pd.DataFrame  # validated numeric raw bars, as a cache keeps them
    prices: pd.DataFrame  # adjusted, model-ready; `attrs["origin"]` names where they came from


def check_bars(raw: pd.DataFrame, ticker: str, origin: str, cfg: DataConfig) -> CheckedBars:
    """Validated numeric raw bars (see validate.validate_prices) with the configured limits,
    and their adjusted prices, which the model must be able to take too."""
    bars = validate_prices(raw, ticker, origin, cfg.max_gap_days, cfg.zero_volume_bars)
    prices = adjust_ohlc(bars, origin)
    check_adjusted(prices, f"{ticker}: {origin}")
    prices.attrs = {"origin": origin}
    return CheckedBars(bars, prices)


def adjust_ohlc(raw: pd.DataFrame, where: str = "prices") -> pd.DataFrame:
    """OHLC scaled by `Adj Close / Close` so splits and dividends are not jumps; FEATURES only.

    All four prices of a row share the factor, so High >= Open, Close >= Low still hold.
    """
    require_columns(raw, where)
    numbers, columns = plain_values(raw)  # FEATURES, and Adj Close when present
    if numbers is None:
        numbers = numeric_columns(raw).to_numpy()
    values = numbers[:, : len(FEATURES)].copy()  # FEATURES lead, in their order
    if ADJ_CLOSE in columns:
        factor = numbers[:, columns.index(ADJ_CLOSE)] / numbers[:, columns.index("Close")]
        values[:, : len(PRICE_COLUMNS)] *= factor[:, None]  # PRICE_COLUMNS lead FEATURES
    return pd.DataFrame(values, index=raw.index, columns=column_index(*FEATURES), copy=False)


@dataclass(frozen=True)
class CachedPrices:
    prices: pd.DataFrame  # adjusted and validated, as load_prices returns them
    path: Path  # the cache file
    stale: str = ""  # why the cache was used without an update; "" when it is current


def check_cache_writable(cfg: DataConfig) -> None:
    """InputError before any download when the cache folder cannot take files: else every
    ticker would be downloaded, then fail to be saved."""
    check_can_create_in(cfg.cache_root(), f"cache {cfg.cache_root()}")


def refresh_cache(ticker: str, cfg: DataConfig, allow_stale: bool = True) -> CachedPrices:
    """Bring the ticker's cache up to date from yfinance and load it.

    Downloads only what is missing, validates the merged bars before writing (a bad download
    never replaces a good cache), writes atomically. When the download fails the cache is used
    with a warning (`allow_stale`), else the failure is raised naming the cache's age.
    """
    path = cache.cache_path(cfg.cache_root(), ticker, cfg.interval)
    cached = cache.read_cache(path)
    request = cache.missing_range(cached, cfg.start, cfg.end, cfg.overlap_days)
    if cached is not None and request is None:
        return CachedPrices(load_cached(cached, ticker, path, cfg), path)
    try:
        merged, first = download_into(ticker, cfg, cached, request or (cfg.start, cfg.end))
    except (DownloadError, NoDataError) as exc:
        return fall_back_on_cache(exc, ticker, cfg, cached, path, allow_stale)
    origin = f"yfinance {cfg.interval} bars"
    checked = check_bars(merged, ticker, origin, cfg)
    save_cache(checked.bars, path, first)
    last = day(checked.bars.index[-1])
    log.info("%s: cache %s holds %d bars up to %s", ticker, path, len(checked.bars), last)
    return CachedPrices(checked.prices, path)


def download_into(
    ticker: str,
    cfg: DataConfig,
    cached: pd.DataFrame | None,
    request: tuple[date | None, date | None],
) -> tuple[pd.DataFrame, date | None]:
    """Cached bars merged with a download of `request`, and the first date the result covers.

    If the source re-adjusted history since the cache was written, the whole history the
    cache covers is downloaded again instead of merging bars on two different bases.
    """
    fresh = yahoo.download_bars(ticker, cfg, *request)
    if cached is None:
        return fresh, request[0]
    first = cache.covered_from(cached)
    if cache.adjustment_changed(cached, fresh):
        log.info("%s: Yahoo re-adjusted past prices (dividend or split): refetching them", ticker)
        start = None if first is None or request[0] is None else min(first, request[0])
        return yahoo.download_bars(ticker, cfg, start, cfg.end), start
    if first is not None and (request[0] is None or request[0] < first):
        first = request[0]
    return cache.merge_bars(cached, fresh), first


def fall_back_on_cache(
    exc: DownloadError | NoDataError,
    ticker: str,
    cfg: DataConfig,
    cached: pd.DataFrame | None,
    path: Path,
    allow_stale: bool = True,
) -> CachedPrices:
    """The cached prices with a warning naming `exc` (what stopped the update) and the cache's
    age; `exc` again, saying what the cache holds, when there is none or not `allow_stale`."""
    if cached is None:
        raise type(exc)(f"{exc}; no cache at {path} to fall back on") from None
    age = cache.describe_age(cached)
    if not allow_stale:
        raise type(exc)(f"{exc}; cache {path} kept ({age})") from None
    log.warning("%s; using the cache %s instead (%s)", exc, path, age)
    return CachedPrices(load_cached(cached, ticker, path, cfg), path, stale=f"{exc} ({age})")


def load_stale(
    ticker: str, cfg: DataConfig, min_rows: int = MIN_ROWS, purpose: str = "a price series"
) -> pd.DataFrame:
    """load_prices from the ticker's cache as it stands, no update tried: the fallback a flow
    takes, with a warning, after `load_prices(allow_stale=False)` failed to download."""
    ticker = validate_ticker(ticker)
    path = cache.cache_path(cfg.cache_root(), ticker, cfg.interval)
    failed = DownloadError(f"{ticker}: yfinance update failed")
    stale = fall_back_on_cache(failed, ticker, cfg, cache.read_cache(path), path)
    return select_dates(stale.prices, ticker, cfg, min_rows, purpose)


def load_cached(cached: pd.DataFrame, ticker: str, path: Path, cfg: DataConfig) -> pd.DataFrame:
    origin = f"cache {path}"
    return check_bars(cached, ticker, origin, cfg).prices


def save_cache(bars: pd.DataFrame, path: Path, covered_from: date | None) -> Path:
    """Write raw bars to `path` atomically, recording the first date they cover (None = all)."""
    bars = bars.copy()
    bars.attrs = {cache.COVERED_FROM: covered_from.isoformat() if covered_from else ""}
    write_atomic(path, lambda tmp: bars.to_parquet(tmp))
    return path


def latest_window(prices: pd.DataFrame, window: int) -> np.ndarray:
    """The last `window` rows of FEATURES as float32 [window, n_features]."""
    last = prices.iloc[-window:]
    if tuple(last.columns) == FEATURES:  # as loaded: no column lookup (~1 ms a ticker)
        return last.to_numpy(np.float32)
    return last.loc[:, list(FEATURES)].to_numpy(np.float32)


def _as_ts(day: date | None) -> pd.Timestamp | None:
    return pd.Timestamp(day) if day else None


def fill_cache(ticker: str, cfg: DataConfig) -> dict[str, str | int]:
    """Update one ticker's cache from yfinance, or import it from `sample`/`csv`; a summary.

    Unlike training and forecasting, a fetch whose download fails is a failure even when a
    cache exists: the job's purpose is a current cache.
    """
    ticker = validate_ticker(ticker)
    if cfg.source == "yfinance":
        cached = refresh_cache(ticker, cfg, allow_stale=False)
        bars, path = cached.prices, cached.path
    else:
        raw, origin = read_local(ticker, cfg)
        bars = check_bars(raw, ticker, origin, cfg).bars
        path = cache.cache_path(cfg.cache_root(), ticker, cfg.interval)
        save_cache(bars, path, covered_from=None)  # the file is the whole history
    return {
        "rows": len(bars),
        "first": day(bars.index[0]),
        "last": day(bars.index[-1]),
        "path": str(path),
    }
