"""Figures logged with every run: loss curves, actual vs forecast, residuals, fan charts and
the reliability of the quantiles (test span)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple

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
    chosen: Sequence[tuple[str, str]],
    tickers: tuple[str, ...],
    ticker_ids: np.ndarray,
    as_of: np.ndarray,
    actual: np.ndarray,
    forecast: np.ndarray,
    test_mase: float,
    last_days: int | None = None,
) -> Figure:
    """Next-day close vs the model's 1-day forecast over the test span, one panel per chosen
    ticker (e.g. from `forecast_tickers`), its title saying why it was chosen.

    Windows of a ticker are consecutive trading days, so window i's target day is window
    i + 1's last day: that is the date each point is drawn at. `last_days` zooms in on the
    span's end, where a daily gap between the two lines is visible at all.
    """
    fig, axes = _panels(chosen, height=3.2)
    style = {"linewidth": 1, "marker": "." if last_days else None, "markersize": 3}
    for ax, (ticker, why) in zip(axes, chosen, strict=False):
        drawn, dates = _drawn_windows(ticker, tickers, ticker_ids, as_of, last_days)
        ax.plot(dates, actual[drawn, 0], label="actual close", **style)
        ax.plot(dates, forecast[drawn, 0], label="forecast (h=1)", alpha=0.8, **style)
        ax.set_title(f"{ticker}: {why}", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    axes[0].legend(fontsize=8)
    span = f"Last {last_days} trading days of the test span" if last_days else "Test span"
    chosen_by = ", chosen by their test MASE" if len(chosen) < len(tickers) else ""
    fig.suptitle(
        f"{span}: actual vs 1-day forecast, {len(chosen)} of {len(tickers)} tickers{chosen_by} "
        f"(test MASE all horizons {test_mase:.3f})"
    )
    return fig


def _panels(chosen: Sequence[tuple[str, str]], height: float) -> tuple[Figure, np.ndarray]:
    """A figure of one panel per chosen ticker, two columns, its unused last panel hidden; at
    most PANELS_MAX panels, so the PNG's size does not grow with the tickers trained."""
    if not 0 < len(chosen) <= PANELS_MAX:
        raise ValueError(f"{len(chosen)} panels; choose 1 to {PANELS_MAX} tickers")
    cols = min(len(chosen), 2)
    rows = -(-len(chosen) // cols)
    fig = Figure(figsize=(6 * cols, height * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    return fig, axes


def _drawn_windows(
    ticker: str,
    tickers: tuple[str, ...],
    ticker_ids: np.ndarray,
    as_of: np.ndarray,
    last_days: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """A ticker's windows whose 1-day target is drawn (the last `last_days`, else all), and
    their target days: window i's target day is window i + 1's last day, so a ticker's last
    window, whose target lies past the span, is not drawn."""
    windows = np.flatnonzero(ticker_ids == tickers.index(ticker))
    keep = slice(-last_days if last_days else None, None)
    return windows[:-1][keep], as_of[windows[1:]][keep]


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
        # 50 equal bins over both: numpy's linear-time path (no sort), drawn as 2 patches
        span = (min(model.min(), naive.min()), max(model.max(), naive.max()))
        for name, errors, alpha in (("naive", naive, 0.5), ("model", model, 0.6)):
            counts, edges = np.histogram(errors, bins=50, range=span)
            label = f"{name} (MAE {np.abs(errors).mean():.2f}%)"
            ax.stairs(counts, edges, fill=True, alpha=alpha, label=label)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="forecast - actual, % of actual", ylabel="windows", title=f"h={k + 1}")
        ax.legend(fontsize=8)
    fig.suptitle("Test-span residuals")
    fig.tight_layout()
    return fig


# Figures with a panel per ticker draw a chosen few, so the PNG stays small however many tickers
# were trained; the per-ticker detail is in the run's tables.
PANELS_MAX = 8
BANDS = {"95%": (0.025, 0.975), "80%": (0.1, 0.9)}  # interval name -> its quantile levels
Rank = Literal["worst", "median", "best"]
PerTicker = Mapping[str, Mapping[str, float | int | str]]  # ticker -> its scores by name


class Criterion(NamedTuple):
    """A per-ticker score to choose by: `key` in each ticker's scores, the `goodness` of its
    value (higher is better), how a reason prints the value, and the words for its two ends."""

    name: str
    key: str
    goodness: Callable[[float], float]
    fmt: str = ".3f"
    ends: tuple[str, str] = ("worst", "best")

    def says(self, rank: Rank, stats: Mapping[str, float | int | str]) -> str:
        """e.g. "worst MASE 1.124": why a ticker at `rank` is shown, with its figure."""
        word = {"worst": self.ends[0], "median": "median", "best": self.ends[1]}[rank]
        return f"{word} {self.figure(stats)}"

    def figure(self, stats: Mapping[str, float | int | str]) -> str:
        return f"{self.name} {float(stats[self.key]):{self.fmt}}"


MASE = Criterion("MASE", "mase", lambda v: -v)
MAE = Criterion("MAE", "mae", lambda v: -v, ".4g", ends=("largest", "smallest"))
COVERAGE_80 = Criterion("80% coverage", "coverage_80", lambda v: -abs(v - 0.8), ".1%")
CRPSS_RW = Criterion("CRPS skill vs rw", "crpss_rw", lambda v: v, "+.1%")
WINDOWS = Criterion("windows", "windows", lambda v: v, ".0f", ends=("fewest", "most"))
# what each figure's panels show: the extremes first (they say most), then a typical ticker
FORECAST_PICKS: tuple[tuple[Rank, Criterion], ...] = (
    ("worst", MASE),
    ("best", MASE),
    ("median", MASE),
    ("worst", MAE),
)
FAN_PICKS: tuple[tuple[Rank, Criterion], ...] = (
    ("worst", COVERAGE_80),
    ("worst", CRPSS_RW),
    ("best", COVERAGE_80),
    ("best", CRPSS_RW),
)


def choose_tickers(
    per_ticker: PerTicker,
    picks: Sequence[tuple[Rank, Criterion]],
    limit: int,
    fill: Criterion = WINDOWS,
) -> list[tuple[str, str]]:
    """A bounded set of (ticker, why it is shown, with its figure): every ticker when they fit,
    else each pick in order, topped up with the best by `fill` (most windows).

    A ticker that is several picks is shown once, with every reason. A non-finite score takes
    no pick; ties go to the first ticker by name, at either end; of an even count's two middle
    tickers, the median is the worse.
    """
    if len(per_ticker) <= limit:
        criteria = dict.fromkeys(criterion for _, criterion in picks)  # once each, in order
        return [
            (ticker, ", ".join(c.figure(stats) for c in criteria))
            for ticker, stats in per_ticker.items()
        ]
    reasons: dict[str, list[str]] = {}
    for rank, criterion in picks:
        ranked = _ranked(per_ticker, criterion, best_first=rank == "best")
        if ranked:
            pick = ranked[(len(ranked) - 1) // 2 if rank == "median" else 0]
            reasons.setdefault(pick, []).append(criterion.says(rank, per_ticker[pick]))
    for ticker in _ranked(per_ticker, fill, best_first=True):
        reasons.setdefault(ticker, [fill.says("best", per_ticker[ticker])])
    return [(ticker, ", ".join(why)) for ticker, why in list(reasons.items())[:limit]]


def _ranked(per_ticker: PerTicker, criterion: Criterion, best_first: bool) -> list[str]:
    """Tickers with a finite score, worst (or best) first; ties by name."""
    sign = -1 if best_first else 1
    key, goodness = criterion.key, criterion.goodness
    scored = [(sign * goodness(float(s[key])), t) for t, s in per_ticker.items()]
    # NaN is dropped before sorting: it compares false with everything and would scramble it
    return [ticker for _, ticker in sorted(pair for pair in scored if np.isfinite(pair[0]))]


def forecast_tickers(per_ticker: PerTicker, limit: int) -> list[tuple[str, str]]:
    """The actual-vs-forecast panels: the worst, best and median by MASE and the largest MAE."""
    return choose_tickers(per_ticker, FORECAST_PICKS, limit)


def fan_tickers(per_ticker: PerTicker, limit: int = 4) -> list[tuple[str, str]]:
    """The fan chart's panels: the worst, then the best, by 80% coverage error
    (|coverage_80 - 0.8|) and by CRPS skill against rw (`crpss_rw`)."""
    return choose_tickers(per_ticker, FAN_PICKS, limit)


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
        chosen: (ticker, why) pairs, e.g. from `fan_tickers`; at most PANELS_MAX.
        actual: [N, H] prices; quantiles: [N, H, Q] prices at `levels` (sorted, Q of them).
    """
    needed = (0.5, *(level for band in BANDS.values() for level in band))
    columns = {level: _level_column(levels, level) for level in needed}
    fig, axes = _panels(chosen, height=3.2)
    for ax, (ticker, why) in zip(axes, chosen, strict=False):
        drawn, dates = _drawn_windows(ticker, tickers, ticker_ids, as_of, last_days)
        truth = actual[drawn, 0]
        fan = quantiles[drawn, 0, :]  # [days, Q]
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
