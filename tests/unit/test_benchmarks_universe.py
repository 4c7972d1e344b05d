"""The universe benchmark's arithmetic (benchmarks/universe_report.py): start-up and non-epoch
seconds, per-ticker lines, artifact sizes and the goals. No timings asserted."""

from __future__ import annotations

import importlib
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their siblings by name
try:
    report = importlib.import_module("universe_report")
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

HELP = """usage: lstm-pipeline [-h] [-v]
                     {fetch,train,backtest,tune,forecast,serve,promote,rollback}
                     ...
"""


def test_startup_is_the_wall_time_the_stages_leave_and_non_epoch_all_but_the_epochs():
    split = report.timing_split(10.0, {"load": 1.0, "epochs": 3.0, "evaluation": 0.5})
    assert split["startup_s"] == pytest.approx(5.5)
    assert split["non_epoch_s"] == pytest.approx(7.0)


def test_without_timings_only_the_wall_time_is_known():
    assert report.timing_split(4.0, {}) == {"timings": {}, "startup_s": None, "non_epoch_s": None}
    forecast = report.timing_split(4.0, {"model": 0.5, "load": 1.0, "forecast": 0.5})
    assert forecast["startup_s"] == pytest.approx(2.0) and forecast["non_epoch_s"] is None


def test_projected_share_scales_the_epochs_not_the_rest():
    assert report.projected_share(10.0, 3.0, 30) == pytest.approx(0.1)
    assert report.projected_share(10.0, 3.0, 1) == pytest.approx(10 / 13)


@pytest.mark.parametrize(
    ("measured", "met"), [(4.99, True), (5.0, False), (7.0, False), (None, None)]
)
def test_a_goal_is_met_strictly_below_its_limit_and_unjudged_when_not_measured(measured, met):
    judged = report.goal("forecast 500 tickers", measured, 5, "s")
    assert judged == {
        "name": "forecast 500 tickers",
        "target": "< 5 s",
        "measured": measured,
        "met": met,
    }


def test_artifact_summary_sizes_every_file_with_the_biggest_and_the_largest_png(tmp_path):
    files = {"a/plot.png": 300, "a/small.png": 20, "b/c/table.csv": 500, "model.onnx": 100}
    for name, size in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * size)
    summary = report.artifact_summary(tmp_path, top=2)
    assert summary["total_bytes"] == 920 and summary["files"] == 4
    assert summary["biggest"] == {"b/c/table.csv": 500, "a/plot.png": 300}
    assert summary["largest_png"] == {"a/plot.png": 300}


def test_artifact_summary_of_a_folder_without_pngs(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert report.artifact_summary(tmp_path)["largest_png"] == {}


def test_subcommands_are_read_from_the_usage_line():
    assert report.subcommands(HELP) == [
        "fetch",
        "train",
        "backtest",
        "tune",
        "forecast",
        "serve",
        "promote",
        "rollback",
    ]
    assert report.subcommands("usage: other [-h]") == []


@settings(max_examples=50, deadline=None)
@given(
    slope=st.floats(0.0, 1.0),
    fixed=st.floats(0.0, 30.0),
    sizes=st.lists(st.integers(1, 10_000), min_size=2, max_size=5, unique=True),
)
def test_per_ticker_recovers_a_linear_cost(slope, fixed, sizes):
    fit = report.per_ticker([(n, slope * n + fixed) for n in sizes])
    assert fit["per_ticker"] == pytest.approx(slope, abs=1e-6)
    assert fit["fixed"] == pytest.approx(fixed, abs=1e-4)


def test_per_ticker_needs_two_sizes():
    assert report.per_ticker([(50, 1.0)]) is None
    assert report.per_ticker([(50, 1.0), (50, 2.0)]) is None


def run(wall: float, rss: float = 300.0, **extra: float | None) -> dict:
    return {"wall_s": wall, "peak_rss_mib": rss, "non_epoch_s": None, "startup_s": None} | extra


def mode(sizes: dict[int, float], train: dict[int, dict] | None = None) -> dict:
    """A mode's results: both models forecast `sizes` in these walls (seconds)."""
    forecast = {str(n): {m: run(wall) for m in report.MODELS} for n, wall in sizes.items()}
    sample = {m: run(2.5) for m in report.MODELS}
    return {"forecast": forecast, "sample": sample, "train": train or {}}


def test_training_per_ticker_line_leaves_out_the_sizes_trained_on_fewer_dates():
    train = {str(n): run(10 + 0.2 * n, non_epoch_s=5 + 0.1 * n) for n in (50, 500)}
    train["5000"] = run(99.0, non_epoch_s=1.0)  # --start cut: off the line
    fits = report.fits(mode({50: 6.0, 500: 24.0}, train))
    assert fits["train (smoke): wall_s"]["per_ticker"] == pytest.approx(0.2)
    assert fits["train (smoke): non_epoch_s"]["per_ticker"] == pytest.approx(0.1)
    assert "train (smoke): startup_s" not in fits  # no timings: not fitted
    wall = fits["forecast, default shape (onnx): wall_s"]
    assert wall["per_ticker"] == pytest.approx(0.04) and wall["fixed"] == pytest.approx(4.0)


def test_goals_are_judged_in_the_server_mode_and_a_size_not_run_is_not_judged():
    server = mode({50: 1.0, 500: 4.0}, {"500": run(60.0, non_epoch_s=12.0)})
    server["default_model"] = run(40.0, non_epoch_s=20.0, timings={"epochs": 20.0})
    no_server = mode({50: 9.0, 500: 99.0})
    full = {"help": {"lstm-pipeline --help": 0.3, "lstm-pipeline train --help": 0.6}}
    judged = {
        g["name"]: g
        for g in report.goals(full | {"modes": {"server": server, "no server": no_server}})
    }
    assert judged["slowest --help (each command's too)"]["measured"] == 0.6
    assert judged["slowest --help (each command's too)"]["met"] is False
    for model in report.MODELS:
        assert judged[f"forecast 500 tickers: wall, {model}"]["met"] is True  # 4 s, not 99 s
        assert judged[f"forecast 6 sample tickers: wall, {model}"]["met"] is True
        assert judged[f"forecast 5,000 tickers: peak RSS, {model}"]["met"] is None
    assert judged["train 500 tickers (smoke): all but the epochs"]["met"] is True
    share = next(g for name, g in judged.items() if "non-epoch share" in name)
    assert share["measured"] == pytest.approx(100 * 20 / (20 + 30 * 20)) and share["met"] is True


def test_dig_walks_nested_results_and_answers_none_for_what_was_not_run():
    tree = {"forecast": {"500": {"wall_s": 4.0}}}
    assert report.dig(tree, "forecast", "500", "wall_s") == 4.0
    assert report.dig(tree, "forecast", "5000", "wall_s") is None
    assert report.dig(tree, "forecast", "500", "wall_s", "deeper") is None
