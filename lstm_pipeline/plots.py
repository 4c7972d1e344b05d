"""Figures logged with every run: loss curves, actual vs forecast, residuals, fan charts and
the reliability of the quantiles (test span)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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


# Fan charts draw a chosen few tickers, so the PNG stays small however many were trained.
FAN_PANELS_MAX = 8
BANDS = {"95%": (0.025, 0.975), "80%": (0.1, 0.9)}  # interval name -> its quantile levels


def fan_tickers(
    per_ticker: Mapping[str, Mapping[str, float]], limit: int = 4
) -> list[tuple[str, str]]:
    """A bounded set of (ticker, why it is shown): all tickers when they fit, else the extremes.

    Beyond `limit` tickers: the worst and best by 80% coverage error (|coverage_80 - 0.8|) and
    by CRPS skill against rw (`crpss_rw`), worst first (they say most), topped up with the
    tickers of most `windows`. A ticker that is several extremes is shown once, with every
    reason. NaN scores take no extreme; ties go to the first ticker by name.
    """
    if len(per_ticker) <= limit:
        return [(ticker, f"all {len(per_ticker)} tickers") for ticker in per_ticker]
    reasons: dict[str, list[str]] = {}
    extremes = (
        ("80% coverage", lambda s: -abs(s["coverage_80"] - 0.8)),
        ("CRPS skill vs rw", lambda s: s["crpss_rw"]),
    )
    for worst_or_best in ("worst", "best"):
        for name, goodness in extremes:
            ranked = _ranked(per_ticker, goodness)
            if ranked:
                pick = ranked[0] if worst_or_best == "worst" else ranked[-1]
                reasons.setdefault(pick, []).append(f"{worst_or_best} {name}")
    for ticker in _ranked(per_ticker, lambda s: -s["windows"]):
        reasons.setdefault(ticker, ["most windows"])
    return [(ticker, ", ".join(why)) for ticker, why in list(reasons.items())[:limit]]


def _ranked(
    per_ticker: Mapping[str, Mapping[str, float]], score: Callable[[Mapping[str, float]], float]
) -> list[str]:
    """Tickers with a finite score, lowest first; ties by name."""
    scored = [(score(stats), ticker) for ticker, stats in per_ticker.items()]
    # NaN is dropped before sorting: it compares false with everything and would scramble it
    return [ticker for _, ticker in sorted(pair for pair in scored if np.isfinite(pair[0]))]


def fan_chart(
    chosen: Sequence[tuple[str, str]],
    tickers: tuple[str, ...],
    ticker_ids: np.ndarray,
    as_of: np.ndarray,
    actual: np.ndarray,
    quantiles: np.ndarray,
    levels: Sequence[float],
    last_days: int = 120,
) -> Figure:
    """Actual price, median and the 80% / 95% bands at h=1, one panel per chosen ticker.

    Dates follow `actual_vs_forecast`: window i's target day is window i + 1's last day.

    Args:
        chosen: (ticker, why) pairs, e.g. from `fan_tickers`; at most FAN_PANELS_MAX.
        actual: [N, H] prices; quantiles: [N, H, Q] prices at `levels` (sorted, Q of them).
    """
    if not 0 < len(chosen) <= FAN_PANELS_MAX:
        raise ValueError(f"{len(chosen)} fan panels; choose 1 to {FAN_PANELS_MAX}")
    needed = (0.5, *(level for band in BANDS.values() for level in band))
    columns = {level: _level_column(levels, level) for level in needed}
    cols = min(len(chosen), 2)
    rows = -(-len(chosen) // cols)
    fig = Figure(figsize=(6 * cols, 3.2 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (ticker, why) in zip(axes, chosen, strict=False):
        mask = ticker_ids == tickers.index(ticker)
        keep = slice(-last_days, None)
        dates = as_of[mask][1:][keep]
        truth = actual[mask][:-1, 0][keep]
        fan = quantiles[mask][:-1, 0, :][keep]  # [days, Q]
        covered = {}
        for (name, (lo, hi)), alpha in zip(BANDS.items(), (0.2, 0.35), strict=True):
            low, high = fan[:, columns[lo]], fan[:, columns[hi]]
            ax.fill_between(dates, low, high, color="C0", alpha=alpha, label=f"{name} interval")
            covered[name] = _share(truth, low, high)
        ax.plot(dates, fan[:, columns[0.5]], color="C0", linewidth=1, label="median")
        ax.plot(dates, truth, color="black", linewidth=1, label="actual close")
        inside = (
            f"these days: actual inside the 80% band {covered['80%']}, the 95% band "
            f"{covered['95%']}"
        )
        ax.set_title(f"{ticker}: {why}\n{inside}", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    # below the panels, where it hides no data
    fig.legend(
        *axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=8
    )
    fig.suptitle(
        f"Last {last_days} trading days of the test span: 1-day fan charts (tickers chosen by "
        "their h=1 scores over the whole test span)"
    )
    return fig


def _level_column(levels: Sequence[float], level: float) -> int:
    """The index of `level` among the model's quantile levels."""
    found = np.flatnonzero(np.isclose(levels, level))
    if not found.size:
        raise ValueError(f"quantile level {level} is not among {list(levels)}")
    return int(found[0])


def _share(truth: np.ndarray, low: np.ndarray, high: np.ndarray) -> str:
    """The share of `truth` inside [low, high], as a percentage ("n/a" for no days)."""
    if not truth.size:
        return "n/a"
    return f"{np.mean((truth >= low) & (truth <= high)):.0%}"


def reliability_diagram(levels: Sequence[float], observed: Mapping[str, np.ndarray]) -> Figure:
    """Nominal quantile level vs the observed share of actuals at or below that quantile.

    Args:
        observed: series name (e.g. "model h=1", "rw h=1") -> [Q] shares, one per level.
    """
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="ideal")
    for name, shares in observed.items():
        if np.shape(shares) != (len(levels),):
            raise ValueError(f"{name}: {np.shape(shares)} shares for {len(levels)} levels")
        ax.plot(levels, shares, marker="o", markersize=3, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="nominal level")
    ax.set(ylabel="observed share of actuals at or below", title="Reliability of the quantiles")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
