"""The live scoring benchmark (benchmarks/live_scoring.py) run tiny: its history has the shape
asked for, with the last days not matured, it is scored from a SQLite store it wrote day by
day, and its JSON has each stage's figures, the store's size and the goal. No timings
asserted."""

from __future__ import annotations

import importlib
import json
import sys

import pandas as pd

from lstm_pipeline.history import ForecastHistory
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


def test_a_tiny_run_scores_from_the_store_and_reports_each_stage_and_its_size(tmp_path):
    store = tmp_path / "kept" / "forecasts.db"
    path = bench.main(
        ["--tickers", "4", "--days", "12", "--repeats", "2", "--output", str(tmp_path / "r.json")]
        + ["--store", str(store), "--notes", "contended"]
    )
    report = json.loads(path.read_text())
    assert report["benchmark"] == "live_scoring-cpu" and report["machine"]["cpu_model"]
    assert report["forecast_rows"] == report["forecast_rows_read"] == 4 * 12 * 5
    assert report["write_runs"] == 12 and report["write_s"] > 0 and report["notes"] == "contended"
    # matured target dates: 11 pooled, 12 - h of horizon h; each in windows 20, 60 and live
    assert report["score_rows"] == (11 + 11 + 10 + 9 + 8 + 7) * 3 and report["verdicts"] == 4
    stages = [report[s] for s in ("read_s", "live_scores_s", "degradation_s", "record_scores_s")]
    assert all(s > 0 for s in stages) and report["total_s"] >= max(stages)
    assert set(report["cpu_s"]) == {
        "read_s",
        "live_scores_s",
        "degradation_s",
        "record_scores_s",
        "total_s",
    }
    assert report["goal"]["measured"] is None and report["goal"]["met"] is None
    assert report["store"]["bytes"] == store.stat().st_size > 0
    assert report["store"]["bytes_per_forecast_row"] == store.stat().st_size / (4 * 12 * 5)
    assert report["peak_rss_mib"] > 0
    assert sorted(p.name for p in store.parent.iterdir()) == ["forecasts.db"]  # WAL checkpointed
    with ForecastHistory.open(f"sqlite:///{store}") as history:  # the rows and scores it wrote
        assert len(history.forecasts("lstm-forecaster", "1")) == 4 * 12 * 5
        assert len(history.scores("lstm-forecaster")) == report["score_rows"]
