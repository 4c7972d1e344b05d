"""Input drift: how far each ticker's recent inputs lie from the model's training data.

Two facts about a ticker's inputs, each over a span of DAYS trading days: the realised
volatility of daily log returns of the (adjusted) close, and the mean volume. At export the
train split's spans are summarised per ticker as the median and MAD of their logs (a few numbers
a ticker, plus a pooled profile for tickers the model never saw) and stored in the ONNX file's
metadata, so the reference travels with the model. A forecast puts each ticker's last span on
that robust z scale; its drift score is the larger |z|. No torch: the forecast path imports this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.errors import first_names

DAYS = 20  # a span: about one trading month of daily returns
ROWS_NEEDED = DAYS + 1  # DAYS returns need DAYS + 1 closes
PROFILE_KEY = "input_profile"  # the ONNX metadata key holding the profile's JSON
DRIFT_THRESHOLD = 3.0  # |z| above which a ticker's inputs are reported as drifted
STATS = ("log_volatility", "log_volume")  # per stat, the profile keeps [median, MAD]
MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation per unit of MAD
# The z scale's floor, in log units: a ticker whose training volume never changed (MAD 0)
# would otherwise call any change infinite drift. 0.1 ~ a 10% change per unit of z.
MIN_SCALE = 0.1
VOLATILITY_FLOOR = 1e-6  # daily; constant prices have volatility 0, whose log is -inf
DECIMALS = 4  # in log units: 0.01% precision; keeps 5,000 tickers' profile ~200 KB


def span_inputs(
    series: Mapping[str, pd.DataFrame], days: int = DAYS
) -> tuple[np.ndarray, np.ndarray]:
    """Every span of `days` daily returns within each frame (`Close` adjusted, `Volume`), all
    frames at once: ([N, 2] log realised volatility and log mean volume, [N] the index of the
    span's frame in `series`). A span's volume is that of its `days` days, logged as mean + 1
    so a day without trades stays finite. A frame of `days` rows or fewer has no span."""
    frames = list(series.values())
    lengths = np.array([len(frame) for frame in frames], dtype=np.int64)
    owner = np.repeat(np.arange(len(frames)), lengths)  # [R] frame of each row
    close = np.concatenate(
        [frame["Close"].to_numpy(np.float64) for frame in frames] or [np.empty(0)]
    )
    volume = np.concatenate(
        [frame["Volume"].to_numpy(np.float64) for frame in frames] or [np.empty(0)]
    )
    returns = np.diff(np.log(close))  # [R - 1], row k to k + 1
    returns[owner[1:] != owner[:-1]] = 0.0  # from one frame to the next: no return
    ends = np.arange(days, len(close))  # the last row of each candidate span
    ends = ends[owner[ends] == owner[ends - days]]  # spans within one frame
    # rolling sums by cumulative sums: one pass however many frames (a span per row of 5,000
    # tickers' train splits), not a window per row
    sum_r, sum_r2, sum_v = (
        np.concatenate([[0.0], np.cumsum(x)]) for x in (returns, returns**2, volume)
    )
    r1 = sum_r[ends] - sum_r[ends - days]
    r2 = sum_r2[ends] - sum_r2[ends - days]
    variance = np.maximum(r2 - r1**2 / days, 0.0) / (days - 1)
    mean_volume = (sum_v[ends + 1] - sum_v[ends + 1 - days]) / days
    volatility = np.maximum(np.sqrt(variance), VOLATILITY_FLOOR)
    return np.column_stack([np.log(volatility), np.log(mean_volume + 1)]), owner[ends]


def summaries(values: np.ndarray, owner: np.ndarray) -> pd.DataFrame:
    """[median, MAD] of each stat (column) of `values` [N, 2] per owner: one row per owner,
    columns median and MAD of STATS[0], then of STATS[1], rounded to DECIMALS."""
    frame = pd.DataFrame(values, columns=list(STATS))
    median = frame.groupby(owner).median()
    mad = (frame - median.loc[owner].to_numpy()).abs().groupby(owner).median()
    pairs = pd.concat({"median": median, "mad": mad}, axis=1).swaplevel(axis=1)
    return pairs[[(stat, kind) for stat in STATS for kind in ("median", "mad")]].round(DECIMALS)


def profile_of(
    train_by_ticker: Mapping[str, pd.DataFrame], days: int = DAYS
) -> dict[str, Any] | None:
    """The training profile (JSON-ready) of each ticker's TRAIN rows (`Close` adjusted, and
    `Volume`): `days`, `stats`, `tickers` {ticker: [median, MAD] per stat} and `pooled` (every
    ticker's spans together, for a ticker the model never saw). Tickers with `days` rows or
    fewer are left out; None when no ticker has more."""
    values, owner = span_inputs(train_by_ticker, days)
    if not len(values):
        return None
    names = list(train_by_ticker)
    per_ticker = summaries(values, owner)
    pooled = summaries(values, np.zeros(len(values), dtype=np.int64))
    rows = per_ticker.to_numpy().tolist()
    return {
        "days": days,
        "stats": list(STATS),
        "tickers": dict(zip([names[i] for i in per_ticker.index], rows, strict=True)),
        "pooled": pooled.values[0].tolist(),
    }


def z_scores(
    profile: Mapping[str, Any], prices_by_ticker: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """Per ticker, the robust z of its last span's log volatility and log volume against its
    own training profile (the pooled one for a ticker the model never saw); NaN for a ticker
    with `days` rows or fewer."""
    days = int(profile["days"])
    names = list(prices_by_ticker)
    recent = {ticker: prices.iloc[-(days + 1) :] for ticker, prices in prices_by_ticker.items()}
    last, owner = span_inputs(recent, days)  # at most one span a ticker: its last
    reference = np.array(
        [profile["tickers"].get(names[i], profile["pooled"]) for i in owner], np.float64
    ).reshape(len(owner), 2 * len(STATS))
    median, mad = reference[:, 0::2], reference[:, 1::2]
    z = (last - median) / np.maximum(MAD_TO_SIGMA * mad, MIN_SCALE)
    index = pd.Index(names, name="ticker")
    return pd.DataFrame(z, index=index[owner], columns=list(STATS)).reindex(index)


def drift_scores(
    profile: Mapping[str, Any], prices_by_ticker: Mapping[str, pd.DataFrame]
) -> pd.Series:
    """`input_drift` per ticker: max(|z volatility|, |z volume|), NaN where z_scores has none."""
    z = z_scores(profile, prices_by_ticker).abs()
    return z.max(axis=1, skipna=False).rename("input_drift")


def drifted(scores: pd.Series, threshold: float = DRIFT_THRESHOLD) -> pd.Series:
    """The scores above `threshold`, most drifted first (ties by ticker)."""
    above = scores[scores > threshold]
    return above.iloc[np.lexsort((above.index.to_numpy(str), -above.to_numpy()))]


def drift_warning(scores: pd.Series, days: int, threshold: float = DRIFT_THRESHOLD) -> str | None:
    """One line naming the tickers drifted above `threshold`, most first, with their scores
    (the first SHOWN_FAILURES and `and N more`); None when there are none."""
    above = drifted(scores, threshold)
    if above.empty:
        return None
    named = first_names({f"{ticker} {score:.1f}": score for ticker, score in above.items()})
    return (
        f"input drift in {len(above)} of {int(scores.notna().sum())} ticker(s): the last {days} "
        f"days' volatility or volume lies more than {threshold:g} robust standard deviations "
        f"from the model's training data: {named}"
    )
