"""The parquet price cache: one file of raw bars per ticker and interval (data.save_cache).

Layout `CACHE_DIR/INTERVAL/TICKER.parquet`. Bars are stored as the source serves them (`Adj
Close` kept), so the split/dividend adjustment is recomputed on every load. The frame's
`attrs["covered_from"]` records the first date ever asked for ("" = the whole history), so a
later request for older data knows it has to download. Never imports torch or yfinance.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from lstm_pipeline.config import DataConfig
from lstm_pipeline.validate import ADJ_CLOSE, day, validate_ticker

log = logging.getLogger(__name__)

COVERED_FROM = "covered_from"
ADJUSTMENT_RTOL = 1e-5  # a smaller change on an old bar is float noise, not a new adjustment


def cache_path(cache_dir: str | Path, ticker: str, interval: str = "1d") -> Path:
    return Path(cache_dir) / interval / f"{validate_ticker(ticker)}.parquet"


def read_cache(path: Path) -> pd.DataFrame | None:
    """The cached bars, or None when there are none; an unreadable file is reported, not fatal."""
    if not path.is_file():
        return None
    try:
        bars = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        log.warning("ignoring unreadable cache %s (%s: %s)", path, type(exc).__name__, exc)
        return None
    return bars if len(bars) else None


def covered_from(bars: pd.DataFrame) -> date | None:
    """The first date the cached download asked for; None when it asked for all history."""
    if COVERED_FROM not in bars.attrs:  # written by something else: trust only its first bar
        return pd.Timestamp(bars.index[0]).date()
    stamp = bars.attrs[COVERED_FROM]
    return date.fromisoformat(stamp) if stamp else None


def missing_range(
    cached: pd.DataFrame | None, start: date | None, end: date | None, overlap_days: int
) -> tuple[date | None, date | None] | None:
    """The (start, end) to download so the cache covers [start, end]; None when it already does.

    Newer bars are fetched from `overlap_days` before the last cached bar, so late revisions of
    recent bars are picked up. Older bars than the cache covers mean one download of the range.
    """
    if cached is None:
        return start, end
    first = covered_from(cached)
    if first is not None and (start is None or start < first):
        return start, end
    last = pd.Timestamp(cached.index[-1]).date()
    if end is not None and end <= last:
        return None
    return last - timedelta(days=overlap_days), end


def adjustment_changed(cached: pd.DataFrame, fresh: pd.DataFrame) -> bool:
    """Whether the source re-based history since the cache was written (a dividend or split).

    Yahoo rescales every earlier Close (splits) and Adj Close (dividends) when one happens, so
    the earliest bar both frames hold must agree; if they share none, nothing is proven.
    """
    common = cached.index.intersection(fresh.index)
    if common.empty:
        return True
    columns = [c for c in ("Close", ADJ_CLOSE) if c in cached.columns and c in fresh.columns]
    old = cached.loc[common[0], columns].astype(float)
    new = fresh.loc[common[0], columns].astype(float)
    return bool(((new - old).abs() > ADJUSTMENT_RTOL * old.abs()).any())


def merge_bars(cached: pd.DataFrame | None, fresh: pd.DataFrame) -> pd.DataFrame:
    """Cached and fresh bars by date, fresh ones winning where both have a date; sorted."""
    if cached is None:
        return fresh.sort_index()
    merged = pd.concat([cached, fresh])
    return merged[~merged.index.duplicated(keep="last")].sort_index()


def age_days(bars: pd.DataFrame, today: date | None = None) -> int:
    """Calendar days from the last bar to `today`."""
    return ((today or date.today()) - pd.Timestamp(bars.index[-1]).date()).days


def describe_age(bars: pd.DataFrame, today: date | None = None) -> str:
    return f"last bar {day(bars.index[-1])}, {age_days(bars, today)} days old"


def fetch_key(ticker: str, cfg: DataConfig, min_rows: int, today: date) -> str | None:
    """What one fetch's result depends on, as a key to reuse it by; None: never reuse it.

    Only yfinance fetches are worth reusing: sample and csv are local reads, and a csv file can
    change under the same name. The key is the ticker, interval, date range, cache folder and
    row minimum (never the frames). A range with no end, or one reaching today, gains a bar
    every trading day, so its key also names today's date.
    """
    if cfg.source != "yfinance":
        return None
    open_ended = cfg.end is None or cfg.end >= today
    parts = [
        validate_ticker(ticker),
        cfg.source,
        cfg.interval,
        f"{cfg.start}..{cfg.end}",
        str(cfg.cache_root().resolve()),
        str(min_rows),
        f"as of {today}" if open_ended else "closed range",
    ]
    return "fetch-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
