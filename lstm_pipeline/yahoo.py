"""yfinance, hardened: the project's one network call, with retries and honest failures.

`yf.download` never raises: it logs what went wrong and returns an empty frame. So the reason is
read back from yfinance's logger to tell a network hiccup or rate limit (retried with backoff)
from an unknown ticker (not retried). Tests patch `yfinance.download`, nothing else.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

import pandas as pd

from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import DownloadError, NetworkEmptyFrameError, NoDataError, one_line
from lstm_pipeline.validate import day

log = logging.getLogger(__name__)

BAR_LENGTH = {"1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1), "1wk": pd.Timedelta(weeks=1)}
INTRADAY_LOOKBACK_DAYS = 729  # Yahoo serves hourly bars for the last 730 days only
# what yfinance logs when the network, not the ticker, is the problem (curl errors, 429, 5xx)
_TRANSIENT = re.compile(
    r"rate ?limit|too many requests|curl|timeout|timed out|connection|dns|ssl|proxy"
    r"|temporar|http error 5\d\d",
    re.IGNORECASE,
)
# yfinance's "['AAPL']: " before a reason, and curl's pointer to its docs after one
_LOGGED_TICKERS = re.compile(r"^\[[^\]]*\]:\s*")
_CURL_DOCS = re.compile(r"\.?\s*See https?://\S+ first for more details\.?")
T = TypeVar("T")


def download_bars(
    ticker: str,
    cfg: DataConfig,
    start: date | None,
    end: date | None,
    now: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Raw finished bars (`Open..Volume`, `Adj Close`) of `ticker` from `start` to `end` inclusive.

    Retries network errors and rate limits with exponential backoff and jitter, bounded by
    `cfg.retry_attempts` and `cfg.retry_max_total` seconds; raises DownloadError when they run
    out and NoDataError when yfinance has nothing. A bar still in progress at `now` is dropped.
    """
    bars = call_with_retries(
        lambda: download_once(ticker, cfg, start, end), cfg, f"{ticker}: yfinance"
    )
    return drop_unfinished_bars(bars, cfg.interval, now or pd.Timestamp.now(tz="UTC"))


def download_once(
    ticker: str, cfg: DataConfig, start: date | None, end: date | None
) -> pd.DataFrame:
    """One `yf.download` call with every option explicit; an empty frame raises."""
    import yfinance as yf  # imported here: slow to import, and only this source needs it

    use_cache_location(cfg.yfinance_cache())
    if start is None and cfg.interval == "1h":
        start = date.today() - timedelta(days=INTRADAY_LOOKBACK_DAYS)
    with logged_errors() as errors, warnings.catch_warnings():
        # yfinance 1.7 on pandas 3 warns (Pandas4Warning, a DeprecationWarning) on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        frame = yf.download(
            ticker,
            start=start.isoformat() if start else None,
            end=(end + timedelta(days=1)).isoformat() if end else None,  # yfinance's is exclusive
            period=None if start else "max",
            interval=cfg.interval,
            auto_adjust=False,  # keep Adj Close: OHLC are adjusted by Adj Close / Close later
            actions=False,
            multi_level_index=False,
            progress=False,
            threads=False,
        )
    if frame is None or frame.empty:
        # offline, yfinance may end with "possibly delisted; no timezone found": an earlier
        # line saying the request itself failed is what tells the outage from an unknown ticker
        network = [line for line in errors if _TRANSIENT.search(line)]
        if network:
            raise NetworkEmptyFrameError(_short_reason(network[-1]))
        reason = _short_reason(errors[-1]) if errors else ""
        span = (f" from {start}" if start else "") + (f" to {end}" if end else "")
        raise NoDataError(
            f"{ticker}: yfinance returned no {cfg.interval} bars{span}"
            " (unknown or delisted ticker, or no trading in the range?)"
            + (f": {reason}" if reason else "")
        )
    return normalise_index(frame, cfg.interval)


def _short_reason(logged: str) -> str:
    return _CURL_DOCS.sub("", _LOGGED_TICKERS.sub("", logged))


def normalise_index(frame: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Index named Date; daily and weekly bars at midnight, intraday bars tz-aware as served."""
    frame = frame.copy()
    if interval != "1h":
        if isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is not None:
            frame.index = frame.index.tz_localize(None)
        frame.index = pd.DatetimeIndex(frame.index).normalize()
    frame.index.name = "Date"
    return frame


def drop_unfinished_bars(frame: pd.DataFrame, interval: str, now: pd.Timestamp) -> pd.DataFrame:
    """Bars whose period has not ended by `now` (UTC) dropped: today's bar is not final yet.

    Daily bars carry the exchange's date at midnight; their day has surely ended by the next
    midnight UTC for every exchange east of UTC-3, so the test is conservative. Intraday bars
    are compared tz-aware, then made naive in exchange time.
    """
    index = pd.DatetimeIndex(frame.index)
    reference = now if index.tz is not None else now.tz_convert("UTC").tz_localize(None)
    finished = index + BAR_LENGTH[interval] <= reference
    if not finished.all():
        log.info(
            "dropped %d unfinished bar(s) from %s", int((~finished).sum()), day(index[~finished][0])
        )
    kept = frame.loc[finished]
    if index.tz is not None:
        kept.index = pd.DatetimeIndex(kept.index).tz_localize(None).rename("Date")
    return kept


def call_with_retries(
    call: Callable[[], T],
    cfg: DataConfig,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`call()`, retried on network errors and rate limits; DownloadError when the budget is spent.

    Retried: OSError (curl_cffi's errors subclass it) and yfinance's YFRateLimitError.
    """
    from yfinance.exceptions import YFRateLimitError

    deadline = clock() + cfg.retry_max_total
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except (OSError, YFRateLimitError) as exc:
            reason = one_line(exc)
            if not isinstance(exc, NetworkEmptyFrameError):  # its text already names the error
                reason = f"{type(exc).__name__}: {reason}"
            delay = backoff_delay(cfg, attempt)
            if attempt >= cfg.retry_attempts or clock() + delay > deadline:
                raise DownloadError(
                    f"{what} failed after {attempt} attempt(s) ({reason})"
                ) from None
            log.warning(
                "%s attempt %d/%d failed (%s); retrying in %.1f s",
                what,
                attempt,
                cfg.retry_attempts,
                reason,
                delay,
            )
            sleep(delay)


def backoff_delay(cfg: DataConfig, attempt: int) -> float:
    """Seconds before retry `attempt`: base * 2^(attempt-1), capped, times a jitter in [0.5, 1].

    The jitter keeps many scheduled jobs that failed together from retrying together.
    """
    exponential = min(cfg.retry_max_delay, cfg.retry_base_delay * 2 ** (attempt - 1))
    return exponential * random.uniform(0.5, 1.0)


_cache_location: Path | None = None


def use_cache_location(folder: Path) -> None:
    """Point yfinance's own caches (timezones, cookies) at `folder` instead of the home dir."""
    global _cache_location
    if folder != _cache_location:
        import yfinance as yf

        folder.mkdir(parents=True, exist_ok=True)
        yf.set_tz_cache_location(str(folder))
        _cache_location = folder


@contextmanager
def logged_errors() -> Iterator[list[str]]:
    """ERROR lines yfinance logs in this thread during the block: its only failure report."""
    errors: list[str] = []
    thread = threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread and record.levelno >= logging.ERROR:
                message = record.getMessage().strip()
                if message:
                    errors.append(message.splitlines()[-1])

    handler = Collect()
    yf_log = logging.getLogger("yfinance")
    yf_log.addHandler(handler)
    try:
        yield errors
    finally:
        yf_log.removeHandler(handler)
