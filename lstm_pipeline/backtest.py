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

from lstm_pipeline.config import FeatureConfig, PipelineConfig
from lstm_pipeline.data import require_rows
from lstm_pipeline.evaluate import score_forecasts, scores_by_ticker_horizon
from lstm_pipeline.features import build_window_sets, min_split_rows
from lstm_pipeline.pipeline import train_model
from lstm_pipeline.significance import panel_diebold_mariano
from lstm_pipeline.train import predict_prices


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
    forecast: np.ndarray = field(repr=False)
    actual: np.ndarray = field(repr=False)
    last_close: np.ndarray = field(repr=False)


def run_fold(
    prices_by_ticker: dict[str, pd.DataFrame],
    cfg: PipelineConfig,
    fold: int,
    folds: int,
    fold_days: int,
) -> FoldResult:
    """Fit a fresh model on the fold's history and score its held-out span."""
    splitter = partial(fold_split, fold=fold, folds=folds, fold_days=fold_days)
    windows = build_window_sets(prices_by_ticker, cfg.features, splitter)
    result = train_model(windows, cfg)
    test = windows["test"]
    forecast, actual, last_close, _ = predict_prices(result.model, test)
    return FoldResult(
        fold=fold,
        first_day=str(pd.Timestamp(test.as_of.min()).date()),
        last_day=str(pd.Timestamp(test.as_of.max()).date()),
        best_epoch=result.best_epoch,
        metrics=score_forecasts(forecast, actual, last_close) | {"best_epoch": result.best_epoch},
        tickers=np.asarray(test.tickers)[test.ticker_ids],
        as_of=test.as_of,
        forecast=forecast,
        actual=actual,
        last_close=last_close,
    )


def pooled_scores(folds: list[FoldResult]) -> tuple[dict[str, float], pd.DataFrame]:
    """Scores over every fold's out-of-sample windows: overall metrics (with a panel
    Diebold-Mariano test of model vs naive absolute errors per horizon) and the per ticker x
    horizon table of a training run, plus DM columns."""
    tickers, as_of, forecast, actual, last = (
        np.concatenate([getattr(f, name) for f in folds])
        for name in ("tickers", "as_of", "forecast", "actual", "last_close")
    )
    overall = score_forecasts(forecast, actual, last)
    names = tuple(dict.fromkeys(tickers))  # in first-seen order
    ticker_ids = np.array([names.index(t) for t in tickers])
    table = pd.DataFrame(scores_by_ticker_horizon(forecast, actual, last, ticker_ids, names))
    table["dm_stat"] = table["dm_pvalue"] = np.nan  # DM is pooled over tickers: ALL rows only
    for k in range(actual.shape[1]):
        model_loss, naive_loss = np.abs(forecast[:, k] - actual[:, k]), np.abs(last - actual[:, k])
        stat, p = panel_diebold_mariano(model_loss, naive_loss, ticker_ids, as_of, k + 1)
        overall |= {f"test_dm_stat_h{k + 1}": stat, f"test_dm_pvalue_h{k + 1}": p}
        pooled = (table["ticker"] == "ALL") & (table["horizon"] == k + 1)
        table.loc[pooled, ["dm_stat", "dm_pvalue"]] = stat, p
    return overall, table


def format_table(table: pd.DataFrame) -> str:
    """The pooled per-horizon rows (ALL tickers) as an aligned text table."""
    rows = table[table["ticker"] == "ALL"]
    lines = ["h  windows  MAE      naive MAE  MASE    direction  base rate  DM stat  p-value"]
    for r in rows.itertuples():
        lines.append(
            f"{r.horizon:<2} {r.windows:>7}  {r.mae:<8.4f} {r.naive_mae:<10.4f} {r.mase:<7.4f} "
            f"{r.directional_accuracy:>8.1%}  {r.direction_base_rate:>9.1%}  "
            f"{r.dm_stat:>7.2f}  {r.dm_pvalue:>7.3f}"
        )
    return "\n".join(lines)
