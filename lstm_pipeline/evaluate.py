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
    moved = actual != naive  # a flat day has no direction to get right
    up = actual[moved] > naive[moved]
    up_rate = float(up.mean()) if up.size else 0.5
    hits = np.sign(forecast - naive)[moved] == np.sign(actual - naive)[moved]
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
    """One row per ticker and horizon (and `ALL` tickers), each scored by score_forecasts.

    Args:
        forecast, actual: [N, H] prices; last_close: [N]; ticker_ids: [N] index into `tickers`.
    Returns:
        Rows with TABLE_COLUMNS: model MAE beside the naive MAE, MASE and directional accuracy.
    """
    groups = [(name, ticker_ids == i) for i, name in enumerate(tickers)]
    groups.append(("ALL", np.ones(len(ticker_ids), dtype=bool)))
    rows: list[dict[str, float | int | str]] = []
    for name, mask in groups:
        for k in range(actual.shape[1]):
            s = score_forecasts(
                forecast[mask, k : k + 1], actual[mask, k : k + 1], last_close[mask], prefix="x"
            )
            rows.append(
                {
                    "ticker": name,
                    "horizon": k + 1,
                    "windows": int(mask.sum()),
                    "mae": s["x_mae"],
                    "naive_mae": s["naive_x_mae"],
                    "mase": s["x_mase"],
                    "directional_accuracy": s["x_directional_accuracy"],
                    "direction_base_rate": s["x_direction_base_rate"],
                }
            )
    return rows
