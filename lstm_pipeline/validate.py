"""Rules a price series must pass before anything trains on it, forecasts from it or caches it.

Errors are DataValidationError, one line: `TICKER: ORIGIN: what on YYYY-MM-DD`, where ORIGIN
names the file or source (`file prices/AAPL.csv`, `yfinance`). Suspicious but usable data
(dropped market-closed rows, long gaps, zero-volume runs) is a warning on this module's logger.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.errors import DataValidationError, InputError

log = logging.getLogger(__name__)

PRICE_COLUMNS = ("Open", "High", "Low", "Close")
FEATURES = (*PRICE_COLUMNS, "Volume")  # model input order; stored in the ONNX metadata
ADJ_CLOSE = "Adj Close"  # optional: close adjusted for splits and dividends
# adjusted prices are products of floats: a High a hair under the Close is rounding, not data
HIGH_LOW_RTOL = 1e-6
# starts like a symbol (AAPL, ^GSPC), so "." or ".." can never be one; tickers become file names
_TICKER = re.compile(r"[A-Z0-9^][A-Z0-9.\-^=]{0,14}")
# The model runs in float32 (max ~3.4e38) and takes ratios of two values of a window (log of
# price / last close, volume / mean volume): values in these bounds keep every ratio under 1e27.
# Far beyond any quoted price (Berkshire A ~1e6, the smallest tokens ~1e-9) or daily volume.
PRICE_MIN, PRICE_MAX = 1e-12, 1e15
VOLUME_MAX = 1e18


def validate_ticker(ticker: str) -> str:
    """Upper-cased ticker, or InputError; tickers become file names, so this runs first."""
    symbol = ticker.strip().upper()
    if not _TICKER.fullmatch(symbol):
        raise InputError(
            f"invalid ticker {ticker!r}: use 1-15 letters, digits or . - ^ = (e.g. AAPL, BRK-B)"
        )
    return symbol


def require_columns(frame: pd.DataFrame, where: str) -> None:
    """DataValidationError unless every one of FEATURES is a column of `frame`."""
    missing = [c for c in FEATURES if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{where}: missing column(s) {', '.join(missing)}")


def validate_prices(
    raw: pd.DataFrame,
    ticker: str,
    origin: str,
    max_gap_days: int = 10,
    zero_volume_bars: int = 3,
) -> pd.DataFrame:
    """The numeric columns of a raw frame less market-closed rows, or DataValidationError.

    Checks the values as the source has them (before any adjustment, so messages quote the
    file). Errors name the first bad date: dates not unique and increasing, a NaN or text, an
    infinity, a price <= 0, negative volume, a value out of the bounds a float32 model can take
    (PRICE_MIN..PRICE_MAX, VOLUME_MAX), High or Low on the wrong side of Open/Close, fewer
    than 2 rows. A time zone on the dates is dropped (each keeps its wall-clock time).
    Warnings: rows with every price NaN (dropped), gaps over `max_gap_days` calendar days,
    `zero_volume_bars` or more zero-volume bars in a row.
    """
    where = f"{ticker}: {origin}"
    require_columns(raw, where)
    if getattr(raw.index, "tz", None) is not None:  # a cache written by something else
        raw = raw.set_axis(pd.DatetimeIndex(raw.index).tz_localize(None))
    prices = sound_bars(raw)
    if prices is None:  # something to drop or refuse: each rule in turn, to say which and where
        check_dates(raw.index, where)
        prices = drop_closed_rows(numeric_columns(raw), where)
        if not rows_all_sound(prices):  # the rules again, one at a time, to name the bad row
            for bad_rows, what in row_problems(prices):
                refuse_first(prices, bad_rows, what, where)
        if len(prices) < 2:
            raise DataValidationError(f"{where}: only {len(prices)} row(s) with prices")
    warn_about_gaps(prices.index, where, max_gap_days)
    warn_about_zero_volume(prices["Volume"], where, zero_volume_bars)
    return prices


def sound_bars(raw: pd.DataFrame) -> pd.DataFrame | None:
    """numeric_columns(raw) when every rule of validate_prices passes and no row is dropped,
    proved on numpy arrays in a fraction of the rules' time; None when a rule must run to
    say what is wrong (text, a NaN, dates out of order, fewer than 2 rows, any bad value)."""
    values, columns = plain_values(raw)
    dates = raw.index
    if values is None or len(values) < 2 or not isinstance(dates, pd.DatetimeIndex):
        return None
    increasing = (np.diff(dates.asi8) > 0).all()  # so unique and sorted, as check_dates wants
    if not increasing or not values_all_sound(values, columns):
        return None
    return pd.DataFrame(values, index=dates, columns=column_index(*columns), copy=False)


def numeric_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """FEATURES and, when present, Adj Close as float64; text becomes NaN (reported as such)."""
    values, columns = plain_values(raw)
    if values is not None:  # the usual file: one numpy copy
        return pd.DataFrame(values, index=raw.index, columns=column_index(*columns), copy=False)
    return raw.loc[:, columns].apply(as_numbers).astype("float64")  # apply: object when empty


@functools.cache
def column_index(*names: str) -> pd.Index:
    """The column labels of a frame this module builds, made once: pandas takes ~35 us to
    turn a list of names into an Index, more than building the rest of the frame. Shared by
    every such frame, as an Index is immutable."""
    return pd.Index(names)


def plain_values(raw: pd.DataFrame) -> tuple[np.ndarray | None, list[str]]:
    """FEATURES and, when present, Adj Close: their names, and their values as one float64
    [rows, columns] array when each is a plain numpy number column (else None). No frame
    lookup by a list of names: it costs more than the copy."""
    columns = [*FEATURES, *([ADJ_CLOSE] if ADJ_CLOSE in raw.columns else [])]
    if not raw.columns.is_unique:
        return None, columns
    names = list(raw.columns)
    if len(names) == len(columns) and set(names) == set(columns):  # no other column: one copy
        if not all(_plain_numbers(dtype) for dtype in raw.dtypes):
            return None, columns
        return raw.to_numpy(dtype="float64")[:, [names.index(c) for c in columns]], columns
    series = [raw[c] for c in columns]
    if not all(_plain_numbers(s.dtype) for s in series):
        return None, columns
    values = np.empty((len(raw), len(columns)))
    for j, column in enumerate(series):
        values[:, j] = column.to_numpy()
    return values, columns


def _plain_numbers(dtype: Any) -> bool:
    """Floats or integers as numpy holds them: no text, no booleans, no missing-value masks."""
    return isinstance(dtype, np.dtype) and dtype.kind in "fiu"


def as_numbers(column: pd.Series) -> pd.Series:
    """float64, NaN where a cell is no number: text, and booleans, which pandas reads from
    `True`/`False` cells and to_numeric would turn into 1 and 0."""
    if column.dtype == np.float64:  # already numbers: validated bars, a parquet cache
        return column
    if pd.api.types.is_bool_dtype(column.dtype):
        return pd.Series(np.nan, index=column.index, name=column.name)
    if column.dtype == object:
        column = column.mask(column.map(lambda cell: isinstance(cell, bool | np.bool_)))
    return pd.to_numeric(column, errors="coerce").astype("float64")


def check_dates(dates: pd.Index, where: str) -> None:
    """DataValidationError unless the dates are unique and strictly increasing."""
    if dates.has_duplicates:
        raise DataValidationError(f"{where}: date {day(dates[dates.duplicated()][0])} repeats")
    if not dates.is_monotonic_increasing:
        bad = int(np.flatnonzero(np.diff(dates.to_numpy()) < np.timedelta64(0))[0]) + 1
        raise DataValidationError(
            f"{where}: dates not increasing at {day(dates[bad])} (after {day(dates[bad - 1])})"
        )


def drop_closed_rows(prices: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rows where every price is NaN dropped with a warning: yfinance emits them for closed days."""
    closed = pd.Series(np.isnan(prices[price_columns(prices)].to_numpy()).all(axis=1), prices.index)
    if closed.any():
        log.warning(
            "%s: dropped %d row(s) without any price (market closed?), the first on %s",
            where,
            int(closed.sum()),
            day(closed.idxmax()),
        )
    return prices.loc[~closed]


def price_columns(prices: pd.DataFrame) -> list[str]:
    return price_columns_of(prices.columns)


def price_columns_of(columns: Any) -> list[str]:
    return [c for c in (*PRICE_COLUMNS, ADJ_CLOSE) if c in columns]


Describe = Callable[[pd.Series], str]  # the first bad row -> what is wrong with it


def rows_all_sound(prices: pd.DataFrame) -> bool:
    """True when no rule of row_problems finds a bad row: the same rules on one numpy array,
    about 20x faster than row_problems' frames, which then run only to name a bad row."""
    return values_all_sound(prices.to_numpy(), list(prices.columns))


def values_all_sound(values: np.ndarray, columns: list[str]) -> bool:
    """rows_all_sound on the [rows, columns] values of the named columns."""
    if not np.isfinite(values).all():  # NaN or infinity
        return False
    priced = values[:, [columns.index(c) for c in price_columns_of(columns)]]
    o, h, low, c, volume = (values[:, columns.index(name)] for name in FEATURES)
    within = (priced >= PRICE_MIN).all() and (priced <= PRICE_MAX).all()
    top, bottom = np.maximum(o, c), np.minimum(o, c)
    return bool(
        within
        and (volume >= 0).all()
        and (volume <= VOLUME_MAX).all()
        and (h >= low).all()
        and (h >= top * (1 - HIGH_LOW_RTOL)).all()
        and (low <= bottom * (1 + HIGH_LOW_RTOL)).all()
    )


def row_problems(prices: pd.DataFrame) -> list[tuple[pd.Series, Describe]]:
    """(bad-row mask, describe the first bad row) per rule, in the order they are reported."""
    high, low, volume = prices["High"], prices["Low"], prices["Volume"]
    top = prices[["Open", "Close"]].max(axis=1)
    bottom = prices[["Open", "Close"]].min(axis=1)
    every, priced = list(prices.columns), price_columns(prices)
    return [
        (
            prices.isna().any(axis=1),
            lambda r: f"missing or non-numeric {', '.join(c for c in every if pd.isna(r[c]))}",
        ),
        (
            ~prices.apply(np.isfinite).all(axis=1),
            lambda r: "non-finite " + ", ".join(f"{c} {r[c]}" for c in every if np.isinf(r[c])),
        ),
        (
            (prices[priced] <= 0).any(axis=1),
            lambda r: "non-positive " + ", ".join(f"{c} {r[c]:g}" for c in priced if r[c] <= 0),
        ),
        (volume < 0, lambda r: f"negative Volume {r['Volume']:g}"),
        out_of_range(prices),
        (high < low, lambda r: f"High {r['High']:g} below Low {r['Low']:g}"),
        (
            high < top * (1 - HIGH_LOW_RTOL),
            lambda r: f"High {r['High']:g} below max(Open, Close) {max(r['Open'], r['Close']):g}",
        ),
        (
            low > bottom * (1 + HIGH_LOW_RTOL),
            lambda r: f"Low {r['Low']:g} above min(Open, Close) {min(r['Open'], r['Close']):g}",
        ),
    ]


def out_of_range(prices: pd.DataFrame, after: str = "") -> tuple[pd.Series, Describe]:
    """(bad-row mask, describe) for prices outside [PRICE_MIN, PRICE_MAX] or Volume over
    VOLUME_MAX; `after` says what made the values (an adjustment)."""
    limits = value_limits(prices.columns)
    outside = outside_limits(prices, limits)

    def describe(row: pd.Series) -> str:
        column = next(c for c, (low, high) in limits.items() if not low <= row[c] <= high)
        low, high = limits[column]
        return f"{column} {row[column]:g}{after} out of range {low:g} to {high:g}"

    return pd.Series(outside.any(axis=1), index=prices.index), describe


def value_limits(columns: Any) -> dict[str, tuple[float, float]]:
    """Column -> (lowest, highest) value the model can take, for those of `columns` it has."""
    limits = {c: (PRICE_MIN, PRICE_MAX) for c in price_columns_of(columns)}
    if "Volume" in columns:
        limits["Volume"] = (0.0, VOLUME_MAX)
    return limits


def outside_limits(prices: pd.DataFrame, limits: dict[str, tuple[float, float]]) -> np.ndarray:
    """[rows, limited columns] True where a value is outside its limits; NaN is outside, as
    between() has it."""
    if list(prices.columns) == list(limits):  # adjusted prices: FEATURES, in order
        values = prices.to_numpy()
    else:  # column by column: a frame lookup by a list of names costs more
        values = np.column_stack([prices[c].to_numpy() for c in limits])
    lows, highs = np.array(list(limits.values())).T  # [columns] each
    return ~((values >= lows) & (values <= highs))


def check_adjusted(prices: pd.DataFrame, where: str) -> None:
    """DataValidationError naming column and date when the split/dividend adjustment took a
    value out of the range the model can take (a tiny or huge Adj Close / Close)."""
    if not outside_limits(prices, value_limits(prices.columns)).any():  # the usual series
        return
    refuse_first(prices, *out_of_range(prices, " after adjustment by Adj Close / Close"), where)


def refuse_first(prices: pd.DataFrame, bad_rows: pd.Series, what: Describe, where: str) -> None:
    """DataValidationError saying what is wrong with the first bad row, and its date."""
    if bad_rows.any():
        first = int(np.flatnonzero(bad_rows.to_numpy())[0])
        raise DataValidationError(
            f"{where}: {what(prices.iloc[first])} on {day(prices.index[first])}"
        )


def warn_about_gaps(dates: pd.Index, where: str, max_gap_days: int) -> None:
    """One warning when consecutive bars lie more than `max_gap_days` calendar days apart."""
    steps = np.diff(dates.to_numpy())
    if len(steps) == 0 or steps.max() <= np.timedelta64(max_gap_days, "D"):  # the usual series
        return
    gaps = pd.Series(dates[1:] - dates[:-1], index=dates[1:]).dt.days
    long_gaps = gaps[gaps > max_gap_days]
    if not long_gaps.empty:
        worst = long_gaps.idxmax()
        log.warning(
            "%s: %d gap(s) longer than %d days; the longest %d days, before %s",
            where,
            len(long_gaps),
            max_gap_days,
            int(long_gaps.max()),
            day(worst),
        )


def warn_about_zero_volume(volume: pd.Series, where: str, min_run: int) -> None:
    """One warning when `min_run` or more consecutive bars have zero volume."""
    zero = volume.to_numpy() == 0
    if zero.sum() < min_run:  # too few zeros for any run: the usual series
        return
    run_id = np.cumsum(~zero)  # constant within each run of zeros
    lengths = pd.Series(run_id[zero]).value_counts()
    runs = lengths[lengths >= min_run]
    if not runs.empty:
        starts = volume.index[zero & (run_id == runs.idxmax())]
        log.warning(
            "%s: %d run(s) of %d+ zero-volume bars; the longest %d bars from %s",
            where,
            len(runs),
            min_run,
            int(runs.max()),
            day(starts[0]),
        )


def require_rows(prices: pd.DataFrame, ticker: str, needed: int, why: str) -> None:
    """DataValidationError unless the series has at least `needed` rows (for `why`).

    Names the series' origin when the loader recorded it (`prices.attrs["origin"]`).
    """
    if len(prices) >= needed:
        return
    origin = prices.attrs.get("origin")
    where = f"{ticker}: {origin}" if origin else ticker
    span = f" from {day(prices.index[0])} to {day(prices.index[-1])}" if len(prices) else ""
    raise DataValidationError(
        f"{where}: {len(prices)} rows{span}, but {needed} are needed for {why}"
    )


def day(ts: Any) -> str:
    """YYYY-MM-DD, or YYYY-MM-DD HH:MM for intraday bars."""
    stamp = pd.Timestamp(ts)
    return stamp.strftime("%Y-%m-%d %H:%M" if stamp != stamp.normalize() else "%Y-%m-%d")
