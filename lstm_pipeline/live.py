"""Live scores: every stored forecast scored against the close that followed it, per model
version and horizon, over rolling windows of matured trading days and since the version went
live; and the verdicts on them (degraded / ok / too few). Pure functions, no I/O.

A forecast is matured when its ticker's realised series has a close on its `target_date` and on
its `as_of`. It is scored in return space: the realised ratio r = close[target] / close[as_of]
comes from one series, so a later split or dividend adjustment of the whole history (which
scales both closes alike) fakes no error; the forecast's ratio is f = forecast / last_close.
Errors are in prices again as last_close * |f - r|, so MAE reads as evaluate.py's does; the
naive forecast is the ratio 1 (no change).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import cast

import numpy as np
import pandas as pd

from lstm_pipeline.config import REQUIRED_QUANTILES, MonitorConfig
from lstm_pipeline.evaluate import direction_outcomes
from lstm_pipeline.intervals import BP, covered, crps

LIVE = "live"  # the window since the version's first forecast
POOLED = 0  # the horizon of the rows that pool every horizon
KEYS = ("model_name", "model_version")
SCORES = (  # each window's scores (MLflow logs them as live_<score>_<window> curves)
    "mae",
    "naive_mae",
    "mase",
    "direction",
    "base_rate",
    "coverage_80",
    "coverage_95",
    "crps",
)
SCORE_COLUMNS = (*KEYS, "horizon", "window", "through", "days_live", "matured", *SCORES)
# the forecast columns of REQUIRED_QUANTILES' levels (0.025, 0.1, 0.5, 0.9, 0.975), the
# fallback CRPS's quantiles; the names are the forecast file's (predict.FORECAST_COLUMNS)
LEVEL_COLUMNS = ("lower_95", "lower_80", "forecast", "upper_80", "upper_95")
# predict.QUANTILE_PREFIX (not imported: predict loads onnxruntime, scoring needs none of it)
QUANTILE_PREFIX = "quantile_"
# per matured forecast, summed per target date and then per window (see _outcomes)
SUMS = (
    *("matured", "err", "naive_err", "moved", "up", "hit"),
    *("n80", "in80", "n95", "in95", "n_crps", "crps_bp"),
)


def live_scores(
    forecasts: pd.DataFrame, closes: Mapping[str, pd.Series], windows: Sequence[int] = (20, 60)
) -> pd.DataFrame:
    """SCORE_COLUMNS: one row per (model_name, model_version, horizon, window, through) for every
    matured target date `through`, so a run after a gap still draws every day.

    Args:
        forecasts: the forecast history (ForecastHistory.forecasts): the forecast file's columns
            plus `model_name`; dates as datetime.date, datetime64 or Timestamps.
        closes: each ticker's realised (adjusted) close, indexed by date.
        windows: rolling windows, in distinct matured target dates; `live` is added.
    Returns:
        `window` is "20", "60", ... or "live" (every matured date since the version's first
        forecast); `horizon` 0 pools every horizon. `matured` counts the forecasts scored,
        `days_live` the trading days (dates of `closes`) after the version's first `as_of` up
        to `through`. mase = sum(error) / sum(naive error) (inf when the naive error is 0);
        direction and base_rate follow evaluate.score_forecasts (a flat day counts neither
        way); coverage_80/_95 and crps (bp of the last close) are NaN without intervals. CRPS
        is intervals.crps over the `quantile_*` columns where a row has them all, else over
        the five levels of REQUIRED_QUANTILES (95%/80% bounds and the median).
    """
    forecasts = forecasts.reset_index(drop=True)
    if forecasts.empty:
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    as_of, target = _days(forecasts["as_of"]), _days(forecasts["target_date"])
    close_days = {ticker: _days(series.index) for ticker, series in closes.items()}
    start, end = (_closes_on(closes, close_days, forecasts["ticker"], d) for d in (as_of, target))
    ratio = end / start
    matured = np.isfinite(ratio) & (ratio > 0)
    if not matured.any():
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    rows = forecasts.loc[matured, [*KEYS, "horizon"]].copy()
    rows["target"] = target[matured]
    rows = pd.concat([rows, _outcomes(forecasts[matured], ratio[matured])], axis=1)
    trading_days = np.unique(np.concatenate(list(close_days.values())))
    first_as_of = pd.Series(as_of).groupby([forecasts[k] for k in KEYS]).min()
    frames = []
    for (name, version, horizon), daily in _daily_sums(rows):
        elapsed = _days_live(trading_days, first_as_of[(name, version)], daily.index.to_numpy())
        for label, size in [*((str(w), int(w)) for w in windows), (LIVE, None)]:
            scores = _window_scores(daily, size)
            scores["model_name"], scores["model_version"] = name, version
            scores["horizon"], scores["window"] = horizon, label
            scores["through"], scores["days_live"] = _dates(daily.index.to_numpy()), elapsed
            frames.append(scores)
    return pd.concat(frames, ignore_index=True)[list(SCORE_COLUMNS)]


def _days(values: pd.Series | pd.Index) -> np.ndarray:
    """Dates as whole days since 1970 (int64). Dates repeat (a few hundred among 625k rows), so
    each distinct value is converted once; a time of day or a time zone is dropped."""
    codes, distinct = pd.factorize(values)
    if (codes < 0).any():
        raise ValueError("a date is missing (NaT or None): every forecast and close has one")
    stamps = pd.DatetimeIndex(pd.to_datetime(distinct))
    if stamps.tz is not None:
        stamps = stamps.tz_localize(None)  # the exchange's own date, as the bar was written
    return stamps.to_numpy("datetime64[D]").astype(np.int64)[codes]


def _dates(days: np.ndarray) -> list[date]:
    return [d.date() for d in pd.to_datetime(days.astype("datetime64[D]"))]


def _closes_on(
    closes: Mapping[str, pd.Series],
    close_days: Mapping[str, np.ndarray],
    tickers: pd.Series,
    days: np.ndarray,
) -> np.ndarray:
    """The close of each (ticker, day), NaN where that ticker's series has no such date: one
    sorted key (ticker, day) per close and one binary search per row, no join. `close_days`:
    each series' dates as _days gives them."""
    names = list(closes)
    book_days = [close_days[n] for n in names]
    out = np.full(len(days), np.nan)
    if not days.size or not any(d.size for d in book_days):
        return out
    lo = min(days.min(), *(d.min() for d in book_days if d.size))
    span = max(days.max(), *(d.max() for d in book_days if d.size)) - lo + 1
    book_key = np.concatenate([i * span + (d - lo) for i, d in enumerate(book_days)])
    book_close = np.concatenate([closes[n].to_numpy(dtype=float) for n in names])
    order = np.argsort(book_key, kind="stable")
    book_key, book_close = book_key[order], book_close[order]
    code = pd.Categorical(tickers, categories=names).codes.astype(np.int64)  # -1: no series
    key = code * span + (days - lo)
    at = np.minimum(np.searchsorted(book_key, key), len(book_key) - 1)
    found = (code >= 0) & (book_key[at] == key)
    out[found] = book_close[at[found]]
    return out


def _outcomes(rows: pd.DataFrame, realised: np.ndarray) -> pd.DataFrame:
    """SUMS of each matured forecast, in return space (the module's docstring): errors in
    prices of its last close, direction hits, interval hits and CRPS in basis points."""
    last = rows["last_close"].to_numpy(float)
    ratio = rows["forecast"].to_numpy(float) / last
    moved, up, hit = direction_outcomes(ratio, realised, np.ones_like(realised))
    out = {
        "matured": np.ones(len(rows)),
        "err": last * np.abs(ratio - realised),
        "naive_err": last * np.abs(1 - realised),
        "moved": moved,
        "up": moved & up,
        "hit": hit,
    }
    for pct, lower, upper in ((80, "lower_80", "upper_80"), (95, "lower_95", "upper_95")):
        low, high = (rows[c].to_numpy(float) / last for c in (lower, upper))
        has = np.isfinite(low) & np.isfinite(high)
        out[f"n{pct}"], out[f"in{pct}"] = has, has & covered(low, high, realised)
    score = _crps_bp(rows, last, realised)
    out["n_crps"], out["crps_bp"] = np.isfinite(score), np.nan_to_num(score)
    return pd.DataFrame({k: np.asarray(v, float) for k, v in out.items()}, index=rows.index)


def _crps_bp(rows: pd.DataFrame, last: np.ndarray, realised: np.ndarray) -> np.ndarray:
    """CRPS of each forecast in bp of its last close (intervals.crps on ratios): over its
    `quantile_*` columns where it has them all, else over LEVEL_COLUMNS; NaN without either."""
    prefixed = [str(c) for c in rows.columns if str(c).startswith(QUANTILE_PREFIX)]
    named = {c: float(c.removeprefix(QUANTILE_PREFIX)) for c in prefixed}
    columns = sorted(named, key=named.__getitem__)
    fallback = crps(_ratios(rows, LEVEL_COLUMNS, last), REQUIRED_QUANTILES, realised) * BP
    if not columns:
        return fallback
    stored = crps(_ratios(rows, columns, last), [named[c] for c in columns], realised) * BP
    return np.where(np.isfinite(stored), stored, fallback)


def _ratios(rows: pd.DataFrame, columns: Sequence[str], last: np.ndarray) -> np.ndarray:
    """[N, Q] prices of `columns` over each row's last close."""
    return rows[list(columns)].to_numpy(float) / last[:, None]


def _daily_sums(rows: pd.DataFrame) -> Iterable[tuple[tuple[str, str, int], pd.DataFrame]]:
    """SUMS per target date (index, sorted) of each (model_name, model_version, horizon), then
    of each version with every horizon pooled (horizon POOLED)."""
    per_horizon = rows.groupby([*KEYS, "horizon", "target"], sort=True)[list(SUMS)].sum()
    pooled = rows.groupby([*KEYS, "target"], sort=True)[list(SUMS)].sum()
    for key, daily in pooled.groupby(level=[0, 1], sort=True):
        name, version = (str(k) for k in cast(tuple[str, str], key))
        yield (name, version, POOLED), daily.droplevel([0, 1])
        versions = cast(pd.DataFrame, per_horizon.xs(key, level=[0, 1]))
        for horizon, by_horizon in versions.groupby(level=0, sort=True):
            yield (name, version, int(cast(int, horizon))), by_horizon.droplevel(0)


def _days_live(trading_days: np.ndarray, first_as_of: int, through: np.ndarray) -> np.ndarray:
    """Trading days after `first_as_of` up to and including each `through` (the MLflow step)."""
    after = np.searchsorted(trading_days, first_as_of, side="right")
    return np.searchsorted(trading_days, through, side="right") - after


def _window_scores(daily: pd.DataFrame, window: int | None) -> pd.DataFrame:
    """The scores at every date of `daily` (SUMS per date, sorted) over its last `window` dates
    (None: every date so far). Sums of a sliding view, not differences of running sums, so an
    all-zero window sums to exactly 0."""
    values = daily.to_numpy(float)  # [D, len(SUMS)]
    if window is None:
        sums = np.cumsum(values, axis=0)
    else:
        padded = np.vstack([np.zeros((window - 1, values.shape[1])), values])
        sums = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0).sum(axis=-1)
    return _scores_from_sums(dict(zip(SUMS, sums.T, strict=True)))


def _scores_from_sums(s: dict[str, np.ndarray]) -> pd.DataFrame:
    """The score columns from SUMS over a window (each [D])."""

    def share(part: np.ndarray, whole: np.ndarray, empty: float) -> np.ndarray:
        return np.divide(part, whole, out=np.full(len(whole), empty), where=whole > 0)

    up_rate = share(s["up"], s["moved"], 0.5)
    return pd.DataFrame(
        {
            "matured": s["matured"].astype(np.int64),
            "mae": s["err"] / s["matured"],
            "naive_mae": s["naive_err"] / s["matured"],
            "mase": share(s["err"], s["naive_err"], np.inf),  # evaluate.error_ratio's rule
            "direction": share(s["hit"], s["moved"], 0.0),
            "base_rate": np.maximum(up_rate, 1 - up_rate),
            "coverage_80": share(s["in80"], s["n80"], np.nan),
            "coverage_95": share(s["in95"], s["n95"], np.nan),
            "crps": share(s["crps_bp"], s["n_crps"], np.nan),
        }
    )


@dataclass(frozen=True)
class Verdict:
    """One judged metric of one model version's latest live scores over one window."""

    model_name: str
    model_version: str
    metric: str  # "mase" or "coverage_80"
    window: str  # "20", "60", ...
    value: float
    threshold: float  # the bound crossed, or for an in-range coverage the nearer bound
    matured: int  # forecasts in the window
    state: str  # "degraded", "ok" or "too_few" (matured < min_matured)


METRICS = ("mase", "coverage_80")


def degradation(scores: pd.DataFrame, cfg: MonitorConfig) -> list[Verdict]:
    """A verdict for each (model_name, model_version, metric of METRICS, rolling window of
    `cfg.windows`) on the pooled rows' latest `through`. "live" is not judged: it never
    forgets a bad start, nor a bad spell once it has passed. A metric a version has no value
    of (coverage without intervals) has no verdict."""
    judged = [str(w) for w in cfg.windows]
    pooled = scores[(scores["horizon"] == POOLED) & scores["window"].isin(judged)]
    latest = pooled.sort_values("through").groupby([*KEYS, "window"], sort=True).tail(1)
    verdicts = []
    for row in latest.to_dict("records"):
        for metric in METRICS:
            value = float(row[metric])
            if np.isnan(value):
                continue
            state, threshold = _judge(metric, value, cfg)
            enough = row["matured"] >= cfg.min_matured
            verdict = Verdict(
                str(row["model_name"]), str(row["model_version"]), metric, str(row["window"]),
                value, threshold, int(row["matured"]), state if enough else "too_few",
            )  # fmt: skip
            verdicts.append(verdict)
    return verdicts


def _judge(metric: str, value: float, cfg: MonitorConfig) -> tuple[str, float]:
    """(state, threshold) of one value with enough matured forecasts behind it."""
    if metric == "mase":
        limit = 1 + cfg.mase_margin
        return ("degraded" if value > limit else "ok"), limit
    low, high = cfg.coverage_80_low, cfg.coverage_80_high
    if value < low or value > high:
        return "degraded", low if value < low else high
    return "ok", low if value - low <= high - value else high


def changes(
    verdicts: Iterable[Verdict], previous: Mapping[tuple[str, str, str], str]
) -> list[Verdict]:
    """The verdicts whose state differs from the last known one, `previous[(model_version,
    metric, window)]` (ForecastHistory.alert_states of their model): a first "degraded" is a
    change, a first "ok" is not (nothing was wrong), "too_few" changes nothing."""
    return [
        v
        for v in verdicts
        if v.state in ("degraded", "ok")
        and (v.state == "degraded")
        != (previous.get((v.model_version, v.metric, v.window)) == "degraded")
    ]
