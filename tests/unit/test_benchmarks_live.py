"""The live scoring benchmark (benchmarks/live_scoring.py) run tiny: its history has the shape
asked for, with the last days not matured, and its JSON the figures and the goal. No timings
asserted."""

from __future__ import annotations

import importlib
import json
import sys

import pandas as pd

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their siblings by name
try:
    bench = importlib.import_module("live_scoring")
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def test_the_synthetic_history_has_every_ticker_day_and_horizon():
    forecasts, closes = bench.synthetic_history(tickers=3, days=10, horizons=2)
    assert len(forecasts) == 3 * 10 * 2 and sorted(closes) == sorted(forecasts["ticker"].unique())
    assert all(len(series) == 10 for series in closes.values())
    beyond = pd.to_datetime(forecasts["target_date"]) > max(s.index.max() for s in closes.values())
    assert beyond.sum() == 3 * (1 + 2)  # the last day's two horizons, the day before's second


def test_a_tiny_run_writes_the_figures_and_leaves_the_goal_unjudged(tmp_path):
    path = bench.main(
        ["--tickers", "4", "--days", "12", "--repeats", "1", "--output", str(tmp_path / "r.json")]
    )
    report = json.loads(path.read_text())
    assert report["benchmark"] == "live_scoring-cpu" and report["machine"]["cpu_model"]
    assert report["forecast_rows"] == 4 * 12 * 5
    # matured target dates: 11 pooled, 12 - h of horizon h; each in windows 20, 60 and live
    assert report["score_rows"] == (11 + 11 + 10 + 9 + 8 + 7) * 3 and report["verdicts"] == 4
    assert report["total_s"] >= report["live_scores_s"] > 0
    assert report["goal"]["measured"] is None and report["goal"]["met"] is None
