"""Probabilistic baselines in prices on exactly the scored windows, with no look-ahead.

Each window's origin is its last observed date (`as_of`); every baseline uses only the ticker's
adjusted closes up to and including it, so changing a later close never changes it.

- `rw`: zero-drift random walk. The quantiles of the ticker's last `lookback` overlapping h-day
  log returns (those ending at the origin or before; numpy's linear interpolation), times the
  last close.
- `ewma`: random walk with RiskMetrics EWMA volatility of daily log returns (zero mean), normal
  quantiles scaled by sqrt(h).
- `drift`: the last close times exp(h x the mean of the last `lookback` daily log returns).

Short histories use what there is: an origin needs MIN_RETURNS daily returns (MIN_RETURNS + 1
closes); where fewer than MIN_RETURNS h-day returns exist yet, `rw` takes the daily returns'
quantiles scaled by sqrt(h). Nothing is NaN for an origin with MIN_RETURNS daily returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

MIN_RETURNS = 2  # daily log returns an origin needs: one would give a zero-width interval
LOOKBACK = 250  # trading days, about a year
EWMA_LAMBDA = 0.94  # RiskMetrics' daily decay


@dataclass(frozen=True)
class Baselines:
    """Baseline forecasts of N windows: quantiles `[N, H, Q]` and drift `[N, H]`, in prices."""

    levels: tuple[float, ...]
    last_close: np.ndarray  # [N] the close at each origin, the windows' last close
    rw: np.ndarray  # [N, H, Q]
    ewma: np.ndarray  # [N, H, Q]
    drift: np.ndarray  # [N, H]
    volatility: np.ndarray  # [N] EWMA daily volatility (log return) at each origin

    @classmethod
    def concat(cls, parts: Sequence[Baselines]) -> Baselines:
        """The baselines of several window sets (folds) in order, as one."""
        arrays = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("last_close", "rw", "ewma", "drift", "volatility")
        }
        return cls(levels=parts[0].levels, **arrays)

    def check_matches(
        self, shape: tuple[int, ...], levels: Sequence[float], last_close: np.ndarray
    ) -> None:
        """ValueError unless these baselines were computed for windows of this shape, these
        levels and these last closes (a misaligned origin would score a leaked baseline)."""
        if self.rw.shape != tuple(shape) or not np.allclose(self.levels, levels):
            raise ValueError(
                f"baselines for {self.rw.shape} at levels {list(self.levels)} cannot score"
                f" quantiles {tuple(shape)} at levels {list(levels)}"
            )
        if not np.allclose(self.last_close, last_close, rtol=1e-5, atol=0):
            bad = int(np.argmax(~np.isclose(self.last_close, last_close, rtol=1e-5, atol=0)))
            raise ValueError(
                f"window {bad}: last close {last_close[bad]} differs from the close at its"
                f" origin, {self.last_close[bad]}: the windows and origins are not aligned"
            )


@dataclass(frozen=True)
class _Panel:
    """Every ticker's log closes end to end, and where each window's origin lies in them."""

    log_close: np.ndarray  # [T] all tickers, oldest first within each
    day: np.ndarray  # [T] the row's position within its own ticker (0 = its first close)
    origin: np.ndarray  # [N] index into the [T] arrays
    close: np.ndarray  # [N] the close at each origin

    def returns(self, h: int) -> np.ndarray:
        """`[T]` h-day log returns ending at each row; 0 where the ticker has no h-day return."""
        out = np.zeros_like(self.log_close)
        out[h:] = self.log_close[h:] - self.log_close[:-h]
        out[self.day < h] = 0.0  # would span two tickers
        return out


def _panel(
    closes: Mapping[str, pd.Series],
    tickers: Sequence[str],
    ticker_ids: np.ndarray,
    as_of: np.ndarray,
) -> _Panel:
    """Lay out the closes of `tickers` end to end and find each origin; ValueError naming the
    ticker and date of an origin that is not a date of its ticker's closes."""
    series = [closes[ticker] for ticker in tickers]
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    close = np.concatenate([s.to_numpy(dtype=float) for s in series]) if series else np.empty(0)
    starts = np.cumsum(lengths) - lengths
    day = np.arange(len(close)) - np.repeat(starts, lengths)
    dates = [_nanoseconds(s.index) for s in series]
    origin = _find_rows(
        np.repeat(np.arange(len(series)), lengths), _concat(dates), ticker_ids, as_of
    )
    if (origin < 0).any():
        missing = np.flatnonzero(origin < 0)
        i = missing[np.argmin(ticker_ids[missing])]  # the first ticker's first one
        when = pd.Timestamp(as_of[i]).date()
        raise ValueError(f"{tickers[ticker_ids[i]]}: origin {when} is not among its closes")
    return _Panel(np.log(close), day, origin, close[origin])


def _nanoseconds(dates: np.ndarray | pd.Index) -> np.ndarray:
    return pd.DatetimeIndex(dates).as_unit("ns").asi8


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _find_rows(
    owner: np.ndarray, dates: np.ndarray, ticker_ids: np.ndarray, as_of: np.ndarray
) -> np.ndarray:
    """`[N]` the row of `dates` (each owner's ascending) owned by each window's ticker and on
    its `as_of` date; -1 where there is none. One search over (owner, date) keys."""
    wanted = _nanoseconds(as_of)
    # dates as ranks among the distinct origins only (a few hundred: sorting every close's date
    # took ~0.4 s at 500 tickers): 2i + 1 on the i-th origin date, 2i before it. (owner, rank)
    # keys fit an int64 and sort like the pairs, and only a date that is an origin gets an odd
    # rank, so only it can match
    origins = np.unique(wanted)
    at = np.searchsorted(origins, dates)
    on_origin = origins[np.minimum(at, len(origins) - 1)] == dates if len(origins) else False
    span = 2 * len(origins) + 2
    keys = owner * span + 2 * at + on_origin
    sought = ticker_ids.astype(np.int64) * span + 2 * np.searchsorted(origins, wanted) + 1
    rows = np.minimum(np.searchsorted(keys, sought), max(len(keys) - 1, 0))
    found = (keys[rows] == sought) if len(keys) else np.zeros(len(sought), dtype=bool)
    return np.where(found, rows, -1)


def _sorted_quantiles(
    sorted_rows: np.ndarray, counts: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """`[S, Q]` linear-interpolated quantiles of rows sorted ascending whose first `counts`
    entries are the values (numpy's default method, row by row)."""
    pos = levels[None, :] * (counts[:, None] - 1)  # [S, Q]
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, counts[:, None] - 1)
    below = np.take_along_axis(sorted_rows, low, axis=1)
    above = np.take_along_axis(sorted_rows, high, axis=1)
    return below + (pos - low) * (above - below)


def _trailing_quantiles(
    values: np.ndarray, ends: np.ndarray, counts: np.ndarray, levels: np.ndarray, lookback: int
) -> np.ndarray:
    """`[N, Q]` quantiles of the `counts` (<= lookback) values of `values` ending at `ends`.

    Full windows come from sliding rank filters over the whole array (one pass per order
    statistic, ~0.05 s per million values; pandas' rolling quantile takes ~10x that, a sort per
    window more); the few short ones are gathered and sorted.
    """
    full = np.flatnonzero(counts == lookback)
    if full.size == len(ends):  # the common case: no copy
        return _full_window_quantiles(values, ends, levels, lookback)
    out = np.empty((len(ends), len(levels)))
    if full.size:
        out[full] = _full_window_quantiles(values, ends[full], levels, lookback)
    short = np.flatnonzero(counts < lookback)
    if short.size:
        back = np.arange(lookback - 1, -1, -1)  # [L] oldest first
        rows = values[np.maximum(ends[short, None] - back, 0)]  # [S, L]
        rows = np.where(back < counts[short, None], rows, np.inf)  # not the window's: sort last
        out[short] = _sorted_quantiles(np.sort(rows, axis=1), counts[short], levels)
    return out


def _full_window_quantiles(
    values: np.ndarray, ends: np.ndarray, levels: np.ndarray, lookback: int
) -> np.ndarray:
    """`[N, Q]` quantiles of the `lookback` values ending at each of `ends`, from one sliding
    rank filter per order statistic needed, run over only the rows those windows cover."""
    values, ends = _covered_rows(values, ends, lookback)
    pos = levels * (lookback - 1)
    ranks = {int(r) for p in pos for r in (np.floor(p), np.ceil(p))}
    ranked = {  # the rank-th smallest of the lookback values ending at each origin
        r: ndimage.rank_filter(values, r, size=lookback, origin=(lookback - 1) // 2)[ends]
        for r in ranks
    }
    out = np.empty((len(levels), len(ends)))  # [Q, N]: each level written contiguously
    for q, p in enumerate(pos):
        low = ranked[int(np.floor(p))]
        np.subtract(ranked[int(np.ceil(p))], low, out=out[q])
        out[q] *= p - np.floor(p)
        out[q] += low
    return out.T


def _covered_rows(
    values: np.ndarray, ends: np.ndarray, lookback: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `values` inside a window of `lookback` rows ending at one of `ends`, in order,
    and where each end lies among them: each window's rows stay consecutive, so a sliding
    filter reads the same values there (a split's origins cover a fraction of every ticker's)."""
    edges = np.zeros(len(values) + 1, dtype=np.int64)
    np.add.at(edges, ends - (lookback - 1), 1)
    np.add.at(edges, ends + 1, -1)
    rows = np.flatnonzero(np.cumsum(edges[:-1]) > 0)
    return values[rows], np.searchsorted(rows, ends)


def _ewma_variance(panel: _Panel, lam: float) -> np.ndarray:
    """`[T]` RiskMetrics variance of daily log returns up to each row (zero mean).

    The recursion s_t = lam s_{t-1} + (1 - lam) r_t^2 is started with its weights renormalised
    over the returns seen so far (pandas' `adjust=True`): s_t = sum lam^(t-i) r_i^2 / sum
    lam^(t-i), i = 1..t, so s_1 = r_1^2 and an early origin is pulled neither toward its first
    return nor toward zero. Once lam^t is negligible (0.94^250 ~ 2e-7) it is the plain
    recursion from any start.
    """
    squared = pd.Series(panel.returns(1) ** 2)
    squared[panel.day == 0] = np.nan  # a ticker's first row has no return
    groups = np.cumsum(panel.day == 0)  # one group per ticker
    # one grouped pass; the groups are consecutive and ascending, so it keeps the rows' order
    return squared.groupby(groups).ewm(alpha=1 - lam).mean().to_numpy()


def compute_baselines(
    closes: Mapping[str, pd.Series],
    tickers: Sequence[str],
    ticker_ids: np.ndarray,
    as_of: np.ndarray,
    horizon: int,
    levels: Sequence[float],
    lookback: int = LOOKBACK,
    ewma_lambda: float = EWMA_LAMBDA,
) -> Baselines:
    """`rw`, `ewma` and `drift` forecasts of N windows (see the module's docstring).

    Args:
        closes: each ticker's full adjusted closes, indexed by date (ascending).
        ticker_ids: `[N]` index into `tickers`; as_of: `[N]` each window's origin date.
    """
    if lookback < MIN_RETURNS:
        raise ValueError(f"lookback {lookback} is below the {MIN_RETURNS} returns a baseline needs")
    panel = _panel(closes, tickers, ticker_ids, as_of)
    days = panel.day[panel.origin]  # [N] daily returns behind each origin
    if (days < MIN_RETURNS).any():
        i = int(np.argmax(days < MIN_RETURNS))
        raise ValueError(
            f"{tickers[ticker_ids[i]]}: origin {pd.Timestamp(as_of[i]).date()} has {days[i]}"
            f" daily returns before it; a baseline needs {MIN_RETURNS}"
        )
    tau = np.asarray(levels, dtype=float)
    h = np.arange(1, horizon + 1)
    sigma = np.sqrt(_ewma_variance(panel, ewma_lambda)[panel.origin])  # [N] daily
    return Baselines(
        levels=tuple(float(t) for t in levels),
        last_close=panel.close,
        rw=_prices(panel.close, _rw_returns(panel, horizon, tau, lookback)),
        ewma=_prices(panel.close, _ewma_returns(sigma, h, tau)),
        drift=_prices(panel.close, h[None, :] * _mean_return(panel, lookback)[:, None]),
        volatility=sigma,
    )


def compute_by_split(args_by_split: Mapping[str, tuple[Any, ...]]) -> dict[str, Baselines]:
    """compute_baselines of each split's arguments, by split: what a worker process makes for
    an evaluation (baseline_workers.py), importing only this module's numpy, pandas and
    scipy to find this function."""
    return {split: compute_baselines(*args) for split, args in args_by_split.items()}


def _rw_returns(panel: _Panel, horizon: int, tau: np.ndarray, lookback: int) -> np.ndarray:
    """`[N, H, Q]` empirical quantiles of each origin's trailing h-day log returns."""
    days = panel.day[panel.origin]
    out = np.empty((len(days), horizon, len(tau)))
    for h in range(1, horizon + 1):
        counts = np.clip(days - h + 1, 0, lookback)  # h-day returns ending at t in [h, origin]
        enough = counts >= MIN_RETURNS  # every origin at h = 1 (it has MIN_RETURNS)
        # an origin short of h-day returns takes the daily ones' quantiles, scaled by sqrt(h)
        out[~enough, h - 1] = out[~enough, 0] * np.sqrt(h)
        out[enough, h - 1] = _trailing_quantiles(
            panel.returns(h), panel.origin[enough], counts[enough], tau, lookback
        )
    return out


def _prices(close: np.ndarray, log_returns: np.ndarray) -> np.ndarray:
    """`close` `[N]` times exp(log_returns `[N, ...]`), in place (the arrays can be large)."""
    np.exp(log_returns, out=log_returns)
    log_returns *= close.reshape(-1, *([1] * (log_returns.ndim - 1)))
    return log_returns


def _ewma_returns(sigma: np.ndarray, h: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """`[N, H, Q]` zero-mean normal quantiles of h-day log returns, daily volatility `sigma`."""
    z = np.array([NormalDist().inv_cdf(t) for t in tau])  # [Q]
    return sigma[:, None, None] * np.sqrt(h)[None, :, None] * z[None, None, :]


def _mean_return(panel: _Panel, lookback: int) -> np.ndarray:
    """`[N]` mean of the last `lookback` daily log returns up to each origin (fewer if short)."""
    cumulative = np.concatenate([[0.0], np.cumsum(panel.returns(1))])  # [T + 1]
    counts = np.minimum(panel.day[panel.origin], lookback)
    end = panel.origin + 1
    return (cumulative[end] - cumulative[end - counts]) / counts
