"""Live scoring at scale (issue 16 item 7): `live_scores` + `degradation` over a forecast history
of 500 tickers x 250 forecast days x 5 horizons (625k rows, one model version), goal < 10 s.

Synthetic: each ticker a random walk of closes; each day's forecast a noisy median with 80% /
95% bounds, as the forecast file has them, and dates as datetime64 (as the history returns
them). The last `horizons` days' forecasts are not matured yet, as in a live history. Each figure
is the median of `--repeats` runs, after one warm-up run on a small history. JSON to
benchmarks/results/live_scoring-cpu.json (or `--output`), with the machine and its load.
Usage: python benchmarks/live_scoring.py [--tickers 500] [--days 250] [--horizons 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import load, median, write

from lstm_pipeline.config import MonitorConfig
from lstm_pipeline.live import degradation, live_scores

GOAL_S = 10.0  # issue 16: 500 tickers x 250 days scored in under 10 s on a 2-core machine
GOAL_SIZE = (500, 250, 5)


def synthetic_history(
    tickers: int, days: int, horizons: int, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """(forecasts, closes): `tickers` x `days` forecast days x `horizons` rows; closes run
    `days` trading days, so the last days' targets lie beyond them (not matured)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=days + horizons)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, (tickers, days)), axis=1))  # [T, D]
    names = [f"T{i:04d}" for i in range(tickers)]
    closes = {name: pd.Series(prices[i], index=dates[:days]) for i, name in enumerate(names)}
    ticker, day, horizon = (
        a.ravel()
        for a in np.meshgrid(np.arange(tickers), np.arange(days), np.arange(1, horizons + 1))
    )
    last = prices[ticker, day]
    median_ = last * np.exp(rng.normal(0, 0.015 * np.sqrt(horizon)))
    width = 0.0192 * np.sqrt(horizon) * last  # about 1.28 sigma: an 80% interval
    forecasts = pd.DataFrame(
        {
            "model_name": "lstm-forecaster",
            "model_version": "1",
            "ticker": np.asarray(names)[ticker],
            "as_of": dates[day],
            "horizon": horizon,
            "target_date": dates[day + horizon],
            "forecast": median_,
            "lower_95": median_ - 1.53 * width,
            "lower_80": median_ - width,
            "upper_80": median_ + width,
            "upper_95": median_ + 1.53 * width,
            "last_close": last,
            "run_id": "live-benchmark",
        }
    )
    return forecasts, closes


def score(forecasts: pd.DataFrame, closes: dict[str, pd.Series]) -> dict[str, float]:
    """Seconds of live_scores and of degradation, and the scores' size."""
    started = time.perf_counter()
    scores = live_scores(forecasts, closes, MonitorConfig().windows)
    scored = time.perf_counter()
    verdicts = degradation(scores, MonitorConfig())
    done = time.perf_counter()
    return {
        "live_scores_s": scored - started,
        "degradation_s": done - scored,
        "total_s": done - started,
        "score_rows": len(scores),
        "verdicts": len(verdicts),
    }


def run(tickers: int, days: int, horizons: int, repeats: int) -> dict[str, Any]:
    forecasts, closes = synthetic_history(tickers, days, horizons)
    score(*synthetic_history(5, 20, horizons, seed=1))  # one-time costs out of the figures
    load_before = load()
    runs = [score(forecasts, closes) for _ in range(repeats)]
    total = median(r["total_s"] for r in runs)
    at_goal_size = (tickers, days, horizons) == GOAL_SIZE
    return {
        "tickers": tickers,
        "days": days,
        "horizons": horizons,
        "forecast_rows": len(forecasts),
        "repeats": repeats,
        "live_scores_s": median(r["live_scores_s"] for r in runs),
        "degradation_s": median(r["degradation_s"] for r in runs),
        "total_s": total,
        "score_rows": runs[0]["score_rows"],
        "verdicts": runs[0]["verdicts"],
        "rows_per_s": len(forecasts) / total if total > 0 else None,
        "goal": {
            "name": "score 500 tickers x 250 days (625k forecast rows)",
            "target": f"< {GOAL_S:g} s",
            "measured": total if at_goal_size else None,
            "met": (total < GOAL_S) if at_goal_size else None,
        },
        "load_before": load_before,
        "load_after": load(),
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=GOAL_SIZE[0])
    parser.add_argument("--days", type=int, default=GOAL_SIZE[1])
    parser.add_argument("--horizons", type=int, default=GOAL_SIZE[2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    report = run(args.tickers, args.days, args.horizons, args.repeats)
    path = write("live_scoring-cpu", report, args.output)
    print(
        f"{report['forecast_rows']:,} forecast rows scored in {report['total_s']:.2f} s "
        f"(live_scores {report['live_scores_s']:.2f} s, degradation "
        f"{report['degradation_s']:.3f} s; load {report['load_before']}): {path}"
    )
    return path


if __name__ == "__main__":
    main()
