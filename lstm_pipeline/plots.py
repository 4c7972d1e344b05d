"""Figures logged with every run: loss curves and actual vs forecast on the test span."""

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
) -> Figure:
    """Next-day close vs the model's 1-day forecast over the test span, one panel per ticker.

    Windows of a ticker are consecutive trading days, so window i's target day is window
    i + 1's last day: that is the date each point is drawn at.
    """
    cols = min(len(tickers), 2)
    rows = -(-len(tickers) // cols)
    fig = Figure(figsize=(6 * cols, 3 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, (ax, ticker) in enumerate(zip(axes, tickers, strict=False)):
        mask = ticker_ids == i
        dates = as_of[mask][1:]
        ax.plot(dates, actual[mask][:-1, 0], label="actual close", linewidth=1)
        ax.plot(dates, forecast[mask][:-1, 0], label="forecast (h=1)", linewidth=1, alpha=0.8)
        ax.set_title(ticker)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    for ax in axes[len(tickers) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Test span: actual vs 1-day forecast (test MASE all horizons {test_mase:.3f})")
    fig.tight_layout()
    return fig
