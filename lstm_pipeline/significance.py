"""Significance tests for a backtest's pooled windows: a panel Diebold-Mariano test, Kupiec's
proportion-of-failures test and interval coverage per volatility tercile. Pure numpy."""

from __future__ import annotations

import math

import numpy as np

NO_EVIDENCE = (0.0, 1.0)  # (statistic, p-value) when the data cannot tell the forecasts apart


def panel_diebold_mariano(
    model_loss: np.ndarray,
    base_loss: np.ndarray,
    ticker_ids: np.ndarray,
    dates: np.ndarray,
    horizon: int,
) -> tuple[float, float]:
    """Diebold-Mariano test of equal expected loss over a panel of tickers.

    Each ticker's losses are divided by that ticker's mean base loss, so a $700 ticker does not
    outweigh a $50 one; the scaled loss differential is averaged over the tickers of each date,
    and the test runs on that date series. Same-day losses of different tickers move together,
    so they are one observation, not several independent ones.

    Args:
        model_loss, base_loss: [N] losses of the two forecasts on the same windows.
        ticker_ids: [N] ticker of each window; dates: [N] datetime64 forecast origin of each.
        horizon: the forecast step h.
    Returns:
        (statistic, two-sided p-value from the normal distribution); a negative statistic means
        the model's loss is smaller. (0.0, 1.0) when fewer than two dates or no variance.
    """
    scaled = _loss_differential_per_ticker_scale(model_loss, base_loss, ticker_ids)
    keep = np.isfinite(scaled)  # tickers whose base loss is all zero have no scale
    day_index = np.unique(dates[keep], return_inverse=True)[1]
    daily = np.bincount(day_index, scaled[keep]) / np.bincount(day_index)  # [T], in date order
    if daily.size < 2:
        return NO_EVIDENCE
    variance = _newey_west_variance(daily, _hac_lags(daily.size, horizon))
    if not variance > 0:
        return NO_EVIDENCE
    statistic = float(daily.mean() / math.sqrt(variance / daily.size))
    return statistic, math.erfc(abs(statistic) / math.sqrt(2))


def _loss_differential_per_ticker_scale(
    model_loss: np.ndarray, base_loss: np.ndarray, ticker_ids: np.ndarray
) -> np.ndarray:
    """[N] (model - base) loss over the ticker's mean base loss; NaN where that mean is zero."""
    ids = np.unique(ticker_ids, return_inverse=True)[1]
    scale = np.bincount(ids, base_loss) / np.bincount(ids)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale[ids] > 0, (model_loss - base_loss) / scale[ids], np.nan)


def _hac_lags(dates: int, horizon: int) -> int:
    """Newey-West lags: h-step forecast errors overlap, so the differential is MA(h - 1) at
    least; absolute losses also inherit volatility clustering, which lasts beyond h - 1 days,
    hence Newey and West's (1994) plug-in floor(4 (T/100)^(2/9)) when it is larger."""
    return min(max(horizon - 1, math.floor(4 * (dates / 100) ** (2 / 9))), dates - 1)


def _newey_west_variance(series: np.ndarray, lags: int) -> float:
    """Long-run variance of `series` with Bartlett weights (which keep it non-negative)."""
    n = series.size
    centred = series - series.mean()
    variance = float(centred @ centred) / n
    for lag in range(1, lags + 1):
        weight = 1 - lag / (lags + 1)
        variance += 2 * weight * float(centred[lag:] @ centred[:-lag]) / n
    return variance


def kupiec_pof(misses: int, n: int, rate: float) -> tuple[float, float]:
    """Kupiec's proportion-of-failures test: are `misses` out of `n` consistent with `rate`?

    Returns:
        (likelihood ratio, p-value from the chi-square distribution with one degree of
        freedom). (0.0, 1.0) when n is 0.
    """
    if not 0 < rate < 1 or not 0 <= misses <= n:
        raise ValueError(
            f"kupiec_pof needs 0 < rate < 1 and 0 <= misses <= n, got {rate}, {misses}, {n}"
        )
    if n == 0:
        return NO_EVIDENCE
    observed = misses / n
    log_null = _bernoulli_log_likelihood(misses, n, rate)
    log_observed = _bernoulli_log_likelihood(misses, n, observed)
    ratio = max(2 * (log_observed - log_null), 0.0)  # >= 0 up to rounding
    return ratio, math.erfc(math.sqrt(ratio / 2))


def _bernoulli_log_likelihood(misses: int, n: int, rate: float) -> float:
    """log(rate^misses (1 - rate)^(n - misses)), with 0 log 0 = 0 (so 0 and n misses work)."""
    hits = n - misses
    return (misses * math.log(rate) if misses else 0.0) + (
        hits * math.log1p(-rate) if hits else 0.0
    )


TERCILES = ("low", "mid", "high")


def coverage_by_tercile(
    inside: np.ndarray, volatility: np.ndarray
) -> list[dict[str, float | int | str]]:
    """Interval coverage in each third of the windows ranked by volatility.

    Args:
        inside: [N] bool, whether the actual price fell inside the window's interval.
        volatility: [N] the volatility each window was forecast under.
    Returns:
        One row per tercile (low, mid, high): tercile, volatility_min, volatility_max,
        windows, coverage (NaN for an empty tercile). Ranking, not thresholds, splits the
        windows, so ties cannot leave a tercile empty when there are three windows or more.
    """
    order = np.argsort(volatility, kind="stable")
    rows: list[dict[str, float | int | str]] = []
    for name, part in zip(TERCILES, np.array_split(order, 3), strict=True):
        vol = volatility[part]
        rows.append(
            {
                "tercile": name,
                "volatility_min": float(vol.min()) if part.size else math.nan,
                "volatility_max": float(vol.max()) if part.size else math.nan,
                "windows": int(part.size),
                "coverage": float(inside[part].mean()) if part.size else math.nan,
            }
        )
    return rows
