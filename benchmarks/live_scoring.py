"""Live scoring at scale (issue 16 item 7): a score run over a forecast history of 500 tickers x
250 forecast days x 5 horizons (625k rows, one model version) in a SQLite store, goal < 10 s.

Synthetic: each ticker a random walk of closes; each day's forecast a noisy median with 80% /
95% bounds, as the forecast file has them. The last `horizons` days' forecasts are not matured
yet, as in a live history. The history is first written to a fresh SQLite store as the forecast
flow writes it, one `record_forecasts` per day (timed, reported, outside the goal: those writes
happen over 250 days, one day's 2,500 rows per forecast run). Then the timed score run, as the
score flow does it: read the version's rows from the store, `live_scores`, `degradation`,
`record_scores`; each stage's seconds are the median of `--repeats` runs, after one warm-up run
on a small store. Reported too: the store file's bytes per forecast row as written (the WAL
checkpointed into the file when the store is closed; no VACUUM) and the process's peak RSS.
JSON to benchmarks/results/live_scoring-cpu.json (or `--output`), with the machine and its load.
Usage: python benchmarks/live_scoring.py [--tickers 500] [--days 250] [--horizons 5]
    [--repeats 3] [--store PATH.db (kept; default a temporary file)]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import load, median, write

from lstm_pipeline.config import MonitorConfig
from lstm_pipeline.history import ForecastHistory
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


MODEL = "lstm-forecaster"
STAGES = ("read_s", "live_scores_s", "degradation_s", "record_scores_s")


def write_history(forecasts: pd.DataFrame, path: Path) -> float:
    """Seconds to write `forecasts` into a new SQLite store at `path`, one forecast run (one
    `record_forecasts`, one transaction) per as_of day, as the forecast flow writes them."""
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    runs = forecasts.drop(columns=["model_name"]).groupby("as_of", sort=True)
    started = time.perf_counter()
    with ForecastHistory.open(f"sqlite:///{path}") as history:
        for _, run in runs:
            history.record_forecasts(run, MODEL)
    return time.perf_counter() - started


def score(path: Path, closes: dict[str, pd.Series]) -> dict[str, float]:
    """One score run on the store at `path`: seconds of each stage, and the sizes."""
    times = [(time.perf_counter(), time.process_time())]
    with ForecastHistory.open(f"sqlite:///{path}") as history:
        forecasts = history.forecasts(MODEL, "1")
        times.append((time.perf_counter(), time.process_time()))
        scores = live_scores(forecasts, closes, MonitorConfig().windows)
        times.append((time.perf_counter(), time.process_time()))
        verdicts = degradation(scores, MonitorConfig())
        times.append((time.perf_counter(), time.process_time()))
        history.record_scores(scores)
        times.append((time.perf_counter(), time.process_time()))
    wall, cpu = np.diff(np.asarray(times), axis=0).T.tolist()
    return {
        **dict(zip(STAGES, wall, strict=True)),
        **{f"cpu_{stage}": seconds for stage, seconds in zip(STAGES, cpu, strict=True)},
        "total_s": times[-1][0] - times[0][0],
        "cpu_total_s": times[-1][1] - times[0][1],
        "forecast_rows_read": len(forecasts),
        "score_rows": len(scores),
        "verdicts": len(verdicts),
    }


def warm_up(folder: Path, horizons: int) -> None:
    """One small score run: imports and first-call costs out of the figures."""
    forecasts, closes = synthetic_history(5, 20, horizons, seed=1)
    write_history(forecasts, folder / "warm-up.db")
    score(folder / "warm-up.db", closes)


def run(
    tickers: int, days: int, horizons: int, repeats: int, store: Path, scratch: Path
) -> dict[str, Any]:
    forecasts, closes = synthetic_history(tickers, days, horizons)
    warm_up(scratch, horizons)
    load_before = load()
    write_s = write_history(forecasts, store)
    runs = [score(store, closes) for _ in range(repeats)]
    total = median(r["total_s"] for r in runs)
    store_bytes = store.stat().st_size  # closed: the WAL is checkpointed into it and removed
    at_goal_size = (tickers, days, horizons) == GOAL_SIZE
    return {
        "tickers": tickers,
        "days": days,
        "horizons": horizons,
        "forecast_rows": len(forecasts),
        "forecast_rows_read": runs[0]["forecast_rows_read"],
        "repeats": repeats,
        "write_s": write_s,
        "write_runs": days,
        **{stage: median(r[stage] for r in runs) for stage in STAGES},
        "total_s": total,
        # this process's CPU seconds: on a loaded machine wall time also counts others' work
        "cpu_s": {stage: median(r[f"cpu_{stage}"] for r in runs) for stage in (*STAGES, "total_s")},
        "score_rows": runs[0]["score_rows"],
        "verdicts": runs[0]["verdicts"],
        "rows_per_s": len(forecasts) / total if total > 0 else None,
        "store": {
            "backend": "sqlite (WAL, synchronous=NORMAL)",
            "bytes": store_bytes,
            "bytes_per_forecast_row": store_bytes / len(forecasts),
            "measured": "as written, WAL checkpointed on close, no VACUUM; scores included",
        },
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "goal": {
            "name": "score 500 tickers x 250 days (625k forecast rows) from the store",
            "target": f"< {GOAL_S:g} s (read + live_scores + degradation + record_scores)",
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
    parser.add_argument("--store", type=Path, default=None, help="SQLite file, kept")
    parser.add_argument("--notes", default=None, help="a note kept in the JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="live-scoring-") as folder:
        store = args.store or Path(folder) / "forecasts.db"
        store.parent.mkdir(parents=True, exist_ok=True)
        report = run(args.tickers, args.days, args.horizons, args.repeats, store, Path(folder))
    if args.notes:
        report["notes"] = args.notes
    path = write("live_scoring-cpu", report, args.output)
    stages = ", ".join(f"{stage[:-2]} {report[stage]:.2f} s" for stage in STAGES)
    print(
        f"{report['forecast_rows']:,} forecast rows scored from the store in "
        f"{report['total_s']:.2f} s ({stages}; CPU {report['cpu_s']['total_s']:.2f} s); "
        f"written in {report['write_s']:.1f} s, "
        f"{report['store']['bytes_per_forecast_row']:.0f} bytes per row; peak RSS "
        f"{report['peak_rss_mib']:.0f} MiB; load {report['load_before']}: {path}"
    )
    return path


if __name__ == "__main__":
    main()
