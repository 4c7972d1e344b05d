"""Each ticker's exchange calendar, from exchange_calendars: the trading days a forecast targets.

A ticker's calendar is the config's override (`data.calendars`), else the one its yfinance
suffix names (`VOD.L` -> XLON), else New York's (XNYS). exchange_calendars is imported on first
use only (0.7 s): `lstm-pipeline --help` must not pay for it.
"""

from __future__ import annotations

import functools
import logging
import textwrap
import warnings
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from lstm_pipeline.errors import InputError, one_line
from lstm_pipeline.validate import validate_ticker

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar

log = logging.getLogger(__name__)

DEFAULT_CALENDAR = "XNYS"  # tickers without a suffix are US listings
# yfinance's exchange suffixes -> exchange_calendars names (tests/unit/test_calendars.py builds
# each); a suffix not here gets DEFAULT_CALENDAR and a warning. Tel Aviv (.TA) and Athens (.AT)
# are left out: exchange_calendars 4.13 cannot build XTAE or ASEX.
SUFFIX_CALENDARS = {
    "L": "XLON",
    "IL": "XLON",
    "T": "XTKS",
    "DE": "XETR",
    "F": "XFRA",
    "DU": "XDUS",
    "HM": "XHAM",
    "PA": "XPAR",
    "AS": "XAMS",
    "BR": "XBRU",
    "LS": "XLIS",
    "IR": "XDUB",
    "MI": "XMIL",
    "MC": "XMAD",
    "SW": "XSWX",
    "VI": "XWBO",
    "ST": "XSTO",
    "CO": "XCSE",
    "HE": "XHEL",
    "OL": "XOSL",
    "IC": "XICE",
    "WA": "XWAR",
    "PR": "XPRA",
    "BD": "XBUD",
    "IS": "XIST",
    "TO": "XTSE",
    "V": "XTSE",  # TSX Venture: XTSX is an alias of XTSE, and files name calendars canonically
    "MX": "XMEX",
    "SA": "BVMF",
    "SN": "XSGO",
    "BA": "XBUE",
    "HK": "XHKG",
    "SS": "XSHG",
    "SZ": "XSHG",  # Shenzhen keeps Shanghai's holidays
    "KS": "XKRX",
    "KQ": "XKRX",  # KOSDAQ trades on the KRX calendar
    "TW": "XTAI",
    "TWO": "XTAI",
    "BO": "XBOM",
    "NS": "XBOM",  # NSE and BSE close on the same days
    "SI": "XSES",
    "KL": "XKLS",
    "BK": "XBKK",
    "JK": "XIDX",
    "AX": "XASX",
    "NZ": "XNZE",
    "JO": "XJSE",
    "SR": "XSAU",
}
# trading days are at least ~60% of calendar days on every exchange: this many calendar days
# after the last observed one hold `count` trading days, with a month to spare for long closures
SPAN_DAYS_PER_TRADING_DAY, SPAN_SPARE_DAYS = 2, 31
LAST_YEAR = 2200  # pandas' nanosecond timestamps end in 2262
REASON_CHARS = 160  # of why exchange_calendars cannot build a calendar, in a one-line error


def calendar_for(ticker: str, overrides: Mapping[str, str]) -> str:
    """The calendar name for `ticker`: its override, else its suffix's, else DEFAULT_CALENDAR."""
    if ticker in overrides:
        return overrides[ticker]
    _, dot, suffix = ticker.rpartition(".")
    if not dot:
        return DEFAULT_CALENDAR
    name = SUFFIX_CALENDARS.get(suffix.upper())
    if name is None:
        log.warning(
            "%s: no exchange calendar known for suffix .%s: target dates are %s trading days "
            "(set data.calendars to choose one)",
            ticker,
            suffix,
            DEFAULT_CALENDAR,
        )
        return DEFAULT_CALENDAR
    return name


def check_calendars(overrides: Mapping[str, str]) -> dict[str, str]:
    """`{TICKER: calendar}` with tickers as the data names them and each calendar by its
    canonical name (`NYSE` -> XNYS), the name the forecast file records. ValueError for a
    calendar exchange_calendars does not know or cannot build, or for two keys naming one
    ticker (pydantic turns it into the config's one-line error): found now, not at forecast."""
    checked: dict[str, str] = {}
    keys: dict[str, str] = {}
    for key, name in overrides.items():
        ticker = validate_ticker(key)
        if ticker in keys:
            raise ValueError(f"{keys[ticker]} and {key} name the same ticker {ticker}: keep one")
        keys[ticker] = key
        checked[ticker] = _buildable_calendar(name, key)
    return checked


def _buildable_calendar(name: str, ticker: str) -> str:
    if name not in _calendar_names():
        raise ValueError(
            f"unknown exchange calendar {name!r} for {ticker} (exchange_calendars names "
            "such as XNYS, XLON, XTKS)"
        )
    canonical, failure = _build_check(name)
    if failure:
        raise ValueError(f"exchange calendar {name} cannot be built ({failure})")
    return canonical


@functools.cache  # building one takes 0.1-0.3 s: once per name, however many configs name it
def _build_check(name: str) -> tuple[str, str]:
    """The calendar's canonical name, and why exchange_calendars cannot build it ('' if it can:
    XTAE and ASEX are known to it, and fail)."""
    import exchange_calendars

    try:
        _calendar(name, None, None)
    except Exception as exc:  # ValueError, NotImplementedError and exchange_calendars' own
        # XTAE's lists every special date it trips on: hundreds of timestamps
        return name, textwrap.shorten(one_line(exc), REASON_CHARS, placeholder=" ...")
    return exchange_calendars.resolve_alias(name), ""


def next_trading_days(as_of: pd.Timestamp, count: int, calendar: str) -> list[pd.Timestamp]:
    """The `count` trading days of `calendar` after the day of `as_of`.

    Outside the years exchange_calendars records for a calendar (XSHG and XBOM end in 2026,
    XTKS starts in 1997), weekdays stand in, with a warning.
    """
    return list(_trading_days_after(as_of.date(), count, calendar))


# A universe's tickers mostly share their last day and calendar: 5,000 tickers look up a few
# (day, calendar) pairs, not 5,000 (at ~1 ms each).
@functools.lru_cache(maxsize=1024)
def _trading_days_after(as_of: date, count: int, calendar: str) -> tuple[pd.Timestamp, ...]:
    day = pd.Timestamp(as_of)
    last = day + pd.Timedelta(days=SPAN_DAYS_PER_TRADING_DAY * count + SPAN_SPARE_DAYS)
    sessions, known_from, known_to = _sessions(calendar, day.year, min(last.year, LAST_YEAR))
    candidates = pd.date_range(day + pd.Timedelta(days=1), last)
    known = (candidates >= known_from) & (candidates <= known_to)
    weekday = candidates.day_of_week < 5  # XSAU trades Sunday to Thursday: only off the record
    days = candidates[(known & candidates.isin(sessions)) | (~known & weekday)][:count]
    guessed = days[(days < known_from) | (days > known_to)]
    if len(guessed):
        _warn_unrecorded(calendar, ", ".join(str(d.date()) for d in guessed))
    return tuple(days)


@functools.cache  # once per calendar and days, not once for each of its tickers
def _warn_unrecorded(calendar: str, days: str) -> None:
    log.warning(
        "calendar %s does not record %s: weekdays stand in for its trading days", calendar, days
    )


@functools.lru_cache(maxsize=64)
def _sessions(
    name: str, first_year: int, last_year: int
) -> tuple[pd.DatetimeIndex, pd.Timestamp, pd.Timestamp]:
    """The sessions of `name` in whole years first..last, within the calendar's bounds, and
    the span they cover. Cached: a universe of tickers builds each calendar once per span."""
    factory = _factory(name)
    start = pd.Timestamp(year=first_year, month=1, day=1)
    end = pd.Timestamp(year=last_year, month=12, day=31)
    start = max(start, factory.bound_min() or start)
    end = min(end, factory.bound_max() or end)
    if start >= end:
        return pd.DatetimeIndex([]), start, end  # nothing recorded: every weekday stands in
    try:
        built = _calendar(name, start, end)
    except Exception as exc:  # exchange_calendars raises ValueError and its own errors
        raise InputError(
            f"exchange calendar {name} cannot be built for {start.date()}..{end.date()} "
            f"({one_line(exc)})"
        ) from None
    return pd.DatetimeIndex(built.sessions), start, end


def _calendar(name: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> ExchangeCalendar:
    import exchange_calendars

    # exchange_calendars 4.13 calls APIs that pandas 3.1 deprecates (Series.values of aware
    # dates): its warnings are not the user's to act on, and must not reach a job's stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return exchange_calendars.get_calendar(name, start=start, end=end)


def _factory(name: str) -> type[ExchangeCalendar]:
    """The calendar's class, whose bounds say which years it records, without building it."""
    from exchange_calendars.calendar_utils import global_calendar_dispatcher as dispatcher

    # no public way to a calendar's class: get_calendar builds 20 years, and fails for some
    return dispatcher._calendar_factories[dispatcher.resolve_alias(name)]  # type: ignore[no-any-return]


@functools.cache
def _calendar_names() -> frozenset[str]:
    import exchange_calendars

    return frozenset(exchange_calendars.get_calendar_names())
