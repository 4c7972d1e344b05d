"""Figures logged with every run: loss curves, actual vs forecast and residuals (test span)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in scheduled flows

import numpy as np
from matplotlib.figure import Figure


def loss_curve(history: list[dict[str, float]], best_epoch: int) -> Figure:
    """Train and validation loss per epoch, with the restored best epoch marked."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    epochs = np.arange(1, len(history) + 1)
    for key in ("train_loss", "val_loss"):
        ax.plot(epochs, [h[key] for h in history], marker=".", label=key)
    ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
    ax.set(xlabel="epoch", ylabel="MSE (log returns, %^2)", title="Loss per epoch")
    ax.legend()
    fig.tight_layout()
    return fig


def actual_vs_forecast(
    tickers: tuple[str, ...],
    ticker_ids: np.ndarray,
    as_of: np.ndarray,
    actual: np.ndarray,
    forecast: np.ndarray,
    test_mase: float,
    last_days: int | None = None,
) -> Figure:
    """Next-day close vs the model's 1-day forecast over the test span, one panel per ticker.

    Windows of a ticker are consecutive trading days, so window i's target day is window
    i + 1's last day: that is the date each point is drawn at. `last_days` zooms in on the
    span's end, where a daily gap between the two lines is visible at all.
    """
    cols = min(len(tickers), 2)
    rows = -(-len(tickers) // cols)
    fig = Figure(figsize=(6 * cols, 3 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, (ax, ticker) in enumerate(zip(axes, tickers, strict=False)):
        mask = ticker_ids == i
        keep = slice(-last_days if last_days else None, None)
        dates = as_of[mask][1:][keep]
        style = {"linewidth": 1, "marker": "." if last_days else None, "markersize": 3}
        ax.plot(dates, actual[mask][:-1, 0][keep], label="actual close", **style)
        ax.plot(dates, forecast[mask][:-1, 0][keep], label="forecast (h=1)", alpha=0.8, **style)
        ax.set_title(ticker)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    for ax in axes[len(tickers) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    span = f"last {last_days} trading days of the test span" if last_days else "Test span"
    fig.suptitle(f"{span}: actual vs 1-day forecast (test MASE all horizons {test_mase:.3f})")
    fig.tight_layout()
    return fig


def residual_histogram(forecast: np.ndarray, actual: np.ndarray, last_close: np.ndarray) -> Figure:
    """Forecast errors in % of the actual price, model beside naive, at h=1 and the last horizon.

    Args:
        forecast, actual: [N, H] prices; last_close: [N], the naive forecast.
    """
    horizons = sorted({0, actual.shape[1] - 1})
    fig = Figure(figsize=(6 * len(horizons), 4))
    axes = np.atleast_1d(fig.subplots(1, len(horizons), squeeze=False)).ravel()
    for ax, k in zip(axes, horizons, strict=True):
        model = 100 * (forecast[:, k] / actual[:, k] - 1)
        naive = 100 * (last_close / actual[:, k] - 1)
        bins = np.histogram_bin_edges(np.concatenate([model, naive]), bins=50)
        ax.hist(naive, bins=bins, alpha=0.5, label=f"naive (MAE {np.abs(naive).mean():.2f}%)")
        ax.hist(model, bins=bins, alpha=0.6, label=f"model (MAE {np.abs(model).mean():.2f}%)")
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="forecast - actual, % of actual", ylabel="windows", title=f"h={k + 1}")
        ax.legend(fontsize=8)
    fig.suptitle("Test-span residuals")
    fig.tight_layout()
    return fig
