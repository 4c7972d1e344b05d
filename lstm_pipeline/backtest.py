"""Walk-forward backtests: refit on an expanding history, score each next span against naive.

Fold k of K holds out `fold_days` trading days per ticker; everything before them is its history
(train, then the last `val_frac` as validation for early stopping). The last fold ends at
each ticker's last row. Only forecasts whose targets fall inside a fold's span are scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from lstm_pipeline.baselines import Baselines
from lstm_pipeline.config import FeatureConfig, PipelineConfig
from lstm_pipeline.data import require_rows
from lstm_pipeline.evaluate import score_forecasts, scores_by_ticker_horizon
from lstm_pipeline.features import build_window_sets, min_split_rows
from lstm_pipeline.intervals import (
    COVERAGES,
    covered,
    drift_scores,
    interval,
    interval_scores_by_ticker_horizon,
    score_intervals,
    window_crps,
)
from lstm_pipeline.pipeline import score_split, train_model
from lstm_pipeline.significance import coverage_by_tercile, kupiec_pof, panel_diebold_mariano
from lstm_pipeline.train import Predictions


def fold_split(
    prices: pd.DataFrame, cfg: FeatureConfig, ticker: str, fold: int, folds: int, fold_days: int
) -> dict[str, pd.DataFrame]:
    """Fold `fold` (0-based) of `folds`: history before the held-out span, and the span.

    The history ends with validation (`val_frac` of it, for early stopping) and calibration
    (`calib_frac`, for the intervals) rows. The test frame starts `window` rows early so its
    first window's last day is the day before the span: every target lies inside the span.
    """
    # one window each for train, validation and calibration: a fold exports no model, so the
    # parity check's second window (MIN_WINDOWS_PER_SPLIT) is not needed here
    per_split = min_split_rows(cfg, windows=1)
    test_start = len(prices) - (folds - fold) * fold_days
    n_val, n_calib = (max(round(test_start * f), per_split) for f in (cfg.val_frac, cfg.calib_frac))
    require_rows(
        prices,
        ticker,
        folds * fold_days + n_val + n_calib + per_split,
        f"{folds} folds of {fold_days} days",
    )
    calib_start = test_start - n_calib
    return {
        "train": prices.iloc[: calib_start - n_val],
        "val": prices.iloc[calib_start - n_val : calib_start],
        "calib": prices.iloc[calib_start:test_start],
        "test": prices.iloc[test_start - cfg.window : test_start + fold_days],
    }


def check_folds(
    prices_by_ticker: dict[str, pd.DataFrame], cfg: FeatureConfig, folds: int, fold_days: int
) -> None:
    """InputError naming the first ticker too short for `folds` folds of `fold_days` days: before
    any run is started. The last fold asks the most (the longest history, so the largest
    validation share), so it alone is checked."""
    for ticker, prices in prices_by_ticker.items():
        fold_split(prices, cfg, ticker, folds - 1, folds, fold_days)


@dataclass
class FoldResult:
    fold: int
    first_day: str  # earliest forecast origin (as_of) scored in this fold, across tickers
    last_day: str
    best_epoch: int
    metrics: dict[str, float]
    # [N] per-window arrays, kept to pool the folds for the overall scores
    tickers: np.ndarray = field(repr=False)
    as_of: np.ndarray = field(repr=False)  # datetime64 forecast origin: the panel DM's dates
    predictions: Predictions = field(repr=False)  # prices; quantiles None for a point model
    baselines: Baselines = field(repr=False)  # rw, ewma, drift on the same windows
    levels: tuple[float, ...] = ()  # the quantile levels; () for a point model


def run_fold(
    prices_by_ticker: dict[str, pd.DataFrame],
    cfg: PipelineConfig,
    fold: int,
    folds: int,
    fold_days: int,
) -> FoldResult:
    """Fit a fresh model on the fold's history (a quantile model calibrated on its end) and
    score its held-out span beside naive and the baselines."""
    splitter = partial(fold_split, fold=fold, folds=folds, fold_days=fold_days)
    windows = build_window_sets(prices_by_ticker, cfg.features, splitter)
    result = train_model(windows, cfg)
    test = windows["test"]
    metrics, predictions, base = score_split(result.model, test, prices_by_ticker, "test")
    return FoldResult(
        fold=fold,
        first_day=str(pd.Timestamp(test.as_of.min()).date()),
        last_day=str(pd.Timestamp(test.as_of.max()).date()),
        best_epoch=result.best_epoch,
        metrics=metrics | {"best_epoch": result.best_epoch},
        tickers=np.asarray(test.tickers)[test.ticker_ids],
        as_of=test.as_of,
        predictions=predictions,
        baselines=base,
        levels=result.model.quantiles,
    )


def pooled_scores(folds: list[FoldResult]) -> tuple[dict[str, float], pd.DataFrame]:
    """Scores over every fold's out-of-sample windows: overall metrics (with a panel
    Diebold-Mariano test of model vs naive absolute errors per horizon, and with quantiles the
    interval tests) and the per ticker x horizon table of a training run, plus DM columns."""
    tickers, as_of = (
        np.concatenate([getattr(f, name) for f in folds]) for name in ("tickers", "as_of")
    )
    forecast, actual, last, quantiles = _pooled_predictions(folds)
    base = Baselines.concat([f.baselines for f in folds])
    levels = folds[0].levels
    overall = score_forecasts(forecast, actual, last)
    names = tuple(dict.fromkeys(tickers))  # in first-seen order
    ticker_ids = np.array([names.index(t) for t in tickers])
    rows = scores_by_ticker_horizon(forecast, actual, last, ticker_ids, names)
    if quantiles is None:
        overall |= drift_scores(forecast, actual, base)
    else:  # the interval scores include the drift scores
        overall |= score_intervals(quantiles, levels, actual, last, forecast, base)
        overall |= interval_tests(quantiles, levels, actual, last, base, ticker_ids, as_of)
        extra = interval_scores_by_ticker_horizon(
            quantiles, levels, actual, last, base, ticker_ids, names
        )
        rows = [row | more for row, more in zip(rows, extra, strict=True)]
    table = pd.DataFrame(rows)
    table["dm_stat"] = table["dm_pvalue"] = np.nan  # DM is pooled over tickers: ALL rows only
    for k in range(actual.shape[1]):
        model_loss, naive_loss = np.abs(forecast[:, k] - actual[:, k]), np.abs(last - actual[:, k])
        stat, p = panel_diebold_mariano(model_loss, naive_loss, ticker_ids, as_of, k + 1)
        overall |= {f"test_dm_stat_h{k + 1}": stat, f"test_dm_pvalue_h{k + 1}": p}
        pooled = (table["ticker"] == "ALL") & (table["horizon"] == k + 1)
        table.loc[pooled, ["dm_stat", "dm_pvalue"]] = stat, p
    return overall, table


def _pooled_predictions(
    folds: list[FoldResult],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    forecast, actual, last = (
        np.concatenate([getattr(f.predictions, name) for f in folds])
        for name in ("forecast", "actual", "last_close")
    )
    parts = [f.predictions.quantiles for f in folds]
    present = [q for q in parts if q is not None]
    quantiles = np.concatenate(present) if len(present) == len(parts) else None
    return forecast, actual, last, quantiles


def interval_tests(
    quantiles: np.ndarray,
    levels: tuple[float, ...],
    actual: np.ndarray,
    last_close: np.ndarray,
    base: Baselines,
    ticker_ids: np.ndarray,
    as_of: np.ndarray,
) -> dict[str, float]:
    """Per horizon: a panel Diebold-Mariano test of per-window CRPS against rw and ewma
    (`test_dm_crps_{rw,ewma}_{stat,pvalue}_h{k}`, a negative statistic favours the model) and
    Kupiec's test of the 95% interval's misses (`test_kupiec_95_pvalue_h{k}`); pooled over
    horizons, the coverage of each volatility tercile (EWMA volatility at the origin,
    `test_coverage_{80,95}_vol_{low,mid,high}`)."""
    model_crps = window_crps(quantiles, levels, actual, last_close)
    out: dict[str, float] = {}
    for name in ("rw", "ewma"):
        base_crps = window_crps(getattr(base, name), levels, actual, last_close)
        for k in range(actual.shape[1]):
            stat, p = panel_diebold_mariano(
                model_crps[:, k], base_crps[:, k], ticker_ids, as_of, k + 1
            )
            out |= {f"test_dm_crps_{name}_stat_h{k + 1}": stat}
            out |= {f"test_dm_crps_{name}_pvalue_h{k + 1}": p}
    for coverage in COVERAGES:
        pct = round(coverage * 100)
        inside = covered(*interval(quantiles, levels, coverage), actual)  # [N, H]
        if pct == 95:
            for k in range(actual.shape[1]):
                misses = int((~inside[:, k]).sum())
                _, p = kupiec_pof(misses, len(inside), 1 - coverage)
                out[f"test_kupiec_95_pvalue_h{k + 1}"] = p
        volatility = np.repeat(base.volatility, actual.shape[1])
        for row in coverage_by_tercile(inside.ravel(), volatility):
            out[f"test_coverage_{pct}_vol_{row['tercile']}"] = float(row["coverage"])
    return out


def format_table(table: pd.DataFrame, overall: dict[str, float] | None = None) -> str:
    """The pooled per-horizon rows (ALL tickers) as aligned text tables: point scores beside
    naive, then (with intervals, from `overall`) coverage beside nominal and CRPS beside the
    baselines with their DM p-values."""
    rows = table[table["ticker"] == "ALL"]
    lines = ["h  windows  MAE      naive MAE  MASE    direction  base rate  DM stat  p-value"]
    for r in rows.itertuples():
        lines.append(
            f"{r.horizon:<2} {r.windows:>7}  {r.mae:<8.4f} {r.naive_mae:<10.4f} {r.mase:<7.4f} "
            f"{r.directional_accuracy:>8.1%}  {r.direction_base_rate:>9.1%}  "
            f"{r.dm_stat:>7.2f}  {r.dm_pvalue:>7.3f}"
        )
    if overall is None or "test_coverage_80" not in overall:
        return "\n".join(lines)
    lines += [
        "",
        "h  cover 80% (80)  cover 95% (95)  Kupiec95 p  CRPS bp  skill rw  DM p   skill ewma  DM p",
    ]
    for k in rows["horizon"]:
        m = {name: overall[f"test_{name}_h{k}"] for name in INTERVAL_TESTS}
        lines.append(
            f"{k:<2} {m['coverage_80']:>14.1%}  {m['coverage_95']:>14.1%}  "
            f"{m['kupiec_95_pvalue']:>10.3f}  {m['crps']:>7.1f}  {m['crpss_rw']:>+8.1%}  "
            f"{m['dm_crps_rw_pvalue']:<5.3f}  {m['crpss_ewma']:>+10.1%}  "
            f"{m['dm_crps_ewma_pvalue']:.3f}"
        )
    terciles = ", ".join(
        f"{t} {overall[f'test_coverage_80_vol_{t}']:.1%}" for t in ("low", "mid", "high")
    )
    lines.append(f"80% coverage by volatility tercile (all horizons): {terciles}")
    return "\n".join(lines)


# the per-horizon interval figures of a backtest (`test_{name}_h{k}` metrics), table order
INTERVAL_TESTS = (
    "coverage_80",
    "coverage_95",
    "kupiec_95_pvalue",
    "crps",
    "crpss_rw",
    "dm_crps_rw_pvalue",
    "crpss_ewma",
    "dm_crps_ewma_pvalue",
)
