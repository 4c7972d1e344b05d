"""Forecast scores in price space, always beside the naive forecast (next close = last close)."""

from __future__ import annotations

import numpy as np


def score_forecasts(
    forecast: np.ndarray, actual: np.ndarray, last_close: np.ndarray, prefix: str = "test"
) -> dict[str, float]:
    """Model and naive scores on the same windows.

    Args:
        forecast, actual: [N, H] prices; last_close: [N], the naive forecast for every horizon.
    Returns:
        `{prefix}_mae/_rmse/_mape/_mase`, `naive_{prefix}_mae`, `{prefix}_directional_accuracy`
        beside `{prefix}_direction_base_rate`, and per-horizon `{prefix}_mae_h{k}`/`_mase_h{k}`.
        MASE is the model's MAE over the naive MAE: below 1 beats naive.
    """
    naive = np.broadcast_to(last_close[:, None], actual.shape)
    err = np.abs(forecast - actual)
    naive_err = np.abs(naive - actual)
    moved, went_up, hit = direction_outcomes(forecast, actual, naive)
    up = went_up[moved]
    up_rate = float(up.mean()) if up.size else 0.5
    hits = hit[moved]
    scores = {
        f"{prefix}_mae": float(err.mean()),
        f"{prefix}_rmse": float(np.sqrt(((forecast - actual) ** 2).mean())),
        f"{prefix}_mape": float((err / actual).mean() * 100),
        f"naive_{prefix}_mae": float(naive_err.mean()),
        f"{prefix}_mase": error_ratio(err.mean(), naive_err.mean()),
        f"{prefix}_directional_accuracy": float(hits.mean()) if hits.size else 0.0,
        # what always guessing the more common direction would score
        f"{prefix}_direction_base_rate": max(up_rate, 1 - up_rate),
    }
    for k in range(actual.shape[1]):
        scores[f"{prefix}_mae_h{k + 1}"] = float(err[:, k].mean())
        scores[f"{prefix}_mase_h{k + 1}"] = error_ratio(err[:, k].mean(), naive_err[:, k].mean())
    return scores


def direction_outcomes(
    forecast: np.ndarray, actual: np.ndarray, naive: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(moved, went_up, hit), each of the inputs' shape: whether the actual moved from the naive
    forecast (a flat day has no direction to get right, so it counts neither way), whether it
    rose, and whether the forecast moved the same way (a moved day only)."""
    moved = actual != naive
    hit = moved & (np.sign(forecast - naive) == np.sign(actual - naive))
    return moved, actual > naive, hit


def error_ratio(num: float, den: float) -> float:
    """num / den, inf when den is 0 (a model scored against a perfect baseline)."""
    return float(num / den) if den > 0 else float("inf")


TABLE_COLUMNS = (
    "ticker",
    "horizon",
    "windows",
    "mae",
    "naive_mae",
    "mase",
    "directional_accuracy",
    "direction_base_rate",
)


def scores_by_ticker_horizon(
    forecast: np.ndarray,
    actual: np.ndarray,
    last_close: np.ndarray,
    ticker_ids: np.ndarray,
    tickers: tuple[str, ...],
) -> list[dict[str, float | int | str]]:
    """One row per ticker and horizon (and `ALL` tickers), each scored as score_forecasts would.

    Args:
        forecast, actual: [N, H] prices; last_close: [N]; ticker_ids: [N] index into `tickers`.
    Returns:
        Rows with TABLE_COLUMNS: model MAE beside the naive MAE, MASE and directional accuracy.
    """
    counts = np.bincount(ticker_ids, minlength=len(tickers))
    names, windows = [*tickers, "ALL"], [*counts.tolist(), len(ticker_ids)]
    horizons = actual.shape[1]
    columns: list[
        dict[str, list[float]]
    ] = []  # per horizon: TABLE_COLUMNS[3:] -> [tickers + 1] values, ALL last
    for k in range(horizons):
        per_ticker = _ticker_scores(forecast[:, k], actual[:, k], last_close, ticker_ids, counts)
        pooled = score_forecasts(forecast[:, k : k + 1], actual[:, k : k + 1], last_close, "x")
        columns.append(
            {
                name: [*per_ticker[name].tolist(), pooled[key]]
                for name, key in zip(TABLE_COLUMNS[3:], _POOLED_KEYS, strict=True)
            }
        )
    rows: list[dict[str, float | int | str]] = []
    for t, name in enumerate(names):
        for k in range(horizons):
            row: dict[str, float | int | str] = {"ticker": name, "horizon": k + 1}
            row["windows"] = int(windows[t])
            rows.append(row | {column: values[t] for column, values in columns[k].items()})
    return rows


# score_forecasts' keys (prefix "x") behind TABLE_COLUMNS[3:]
_POOLED_KEYS = ("x_mae", "naive_x_mae", "x_mase", "x_directional_accuracy", "x_direction_base_rate")


def _ticker_scores(
    forecast: np.ndarray,
    actual: np.ndarray,
    last_close: np.ndarray,
    ticker_ids: np.ndarray,
    counts: np.ndarray,
) -> dict[str, np.ndarray]:
    """score_forecasts' figures of one horizon [N] per ticker, by bincount: one pass over the
    windows per figure, not one per ticker (a mask per ticker is 500 passes at 500 tickers)."""

    def per_ticker(weights: np.ndarray) -> np.ndarray:
        return np.bincount(ticker_ids, weights=weights, minlength=len(counts))

    def share(part: np.ndarray, whole: np.ndarray, empty: float) -> np.ndarray:
        return np.divide(part, whole, out=np.full(len(whole), empty), where=whole > 0)

    moved, went_up, hits = direction_outcomes(forecast, actual, last_close)
    n_moved = per_ticker(moved.astype(float))
    up_rate = share(per_ticker((moved & went_up).astype(float)), n_moved, 0.5)
    mae = share(per_ticker(np.abs(forecast - actual)), counts, np.nan)
    naive_mae = share(per_ticker(np.abs(last_close - actual)), counts, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mase = np.where(naive_mae > 0, mae / naive_mae, np.inf)  # error_ratio's rule
    return {
        "mae": mae,
        "naive_mae": naive_mae,
        "mase": mase,
        "directional_accuracy": share(per_ticker(hits.astype(float)), n_moved, 0.0),
        "direction_base_rate": np.maximum(up_rate, 1 - up_rate),
    }
