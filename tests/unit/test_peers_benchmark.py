"""benchmarks/peers.py's pure parts: the peers get our split and our test origins, and are
scored and timed as ours is. Nothing here needs the peers' venv (its runner's helpers that
only need pandas are checked too)."""

import argparse
import importlib
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.features import build_window_sets, split_by_time
from tests.conftest import ROOT


def benchmark_scripts():
    """benchmarks/peers.py and peers_runner.py (scripts, not a package: they import `common`
    from their own folder, as they do when run)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module("peers"), importlib.import_module("peers_runner")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


peers, peers_runner = benchmark_scripts()


def numbered(n: int, first_close: float) -> pd.DataFrame:
    """Bars whose close is first_close + row number: every value says where it came from."""
    close = first_close + np.arange(n, dtype=float)
    return pd.DataFrame(
        {"Open": close, "High": close + 1, "Low": close - 1, "Close": close, "Volume": 1e6},
        index=pd.bdate_range("2015-01-01", periods=n, name="Date"),
    )


def universe(lengths: list[int]) -> dict[str, pd.DataFrame]:
    return {f"T{i}": numbered(n, 100.0 + 10_000 * i) for i, n in enumerate(lengths)}


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(300, 700), min_size=1, max_size=3),
    window=st.integers(5, 40),
)
def test_the_peers_train_on_our_train_rows_and_forecast_our_test_origins(lengths, window):
    cfg = FeatureConfig(window=window, horizon=1)
    prices = universe(lengths)
    windows = build_window_sets(prices, cfg)
    frames = peers.peer_frames(prices, cfg)
    for ticker, (train, test) in frames.items():
        ours = split_by_time(prices[ticker], cfg, ticker)
        assert train["Close"].tolist() == ours["train"]["Close"].tolist()
        assert test["Close"].tolist() == ours["test"]["Close"].tolist()
        # t is the row number in the whole series (close = first close + row number)
        assert (test["Close"] - test["t"]).nunique() == 1
    assert peers.check_alignment(windows["test"], frames, window) == len(windows["test"])
    last, actual = zip(*(peers.test_origins(t, window) for _, t in frames.values()), strict=True)
    test = windows["test"]
    assert np.allclose(np.concatenate(last), test.last_close().double().numpy())
    ours_next = (test.last_close().double() * torch.exp(test.targets[:, 0].double())).numpy()
    assert np.allclose(np.concatenate(actual), ours_next, rtol=1e-6)
    # NeuralForecast's one series per origin ends on our origin's row
    for ticker, (_, test_frame) in frames.items():
        origins = peers_runner.origin_frames(ticker, test_frame, window)
        ends = [frame["Close"].iloc[-1] for _, frame in origins]
        assert np.allclose(ends, peers.test_origins(test_frame, window)[0])
        assert {len(frame) for _, frame in origins} == {window}
    assert peers.window_count(frames, window) == len(windows["train"])
    assert peers_runner.train_windows(frames, window, 1) == len(windows["train"])


def test_misaligned_origins_are_refused():
    cfg = FeatureConfig(window=10, horizon=1)
    prices = universe([400, 500])
    frames = peers.peer_frames(prices, cfg)
    shifted = {t: (train, test.iloc[1:]) for t, (train, test) in frames.items()}
    test = build_window_sets(prices, cfg)["test"]
    with pytest.raises(ValueError, match="not ours"):
        peers.check_alignment(test, shifted, 10)


def test_peer_mase_is_our_mase_on_the_pooled_origins():
    cfg = FeatureConfig(window=10, horizon=1)
    frames = peers.peer_frames(universe([400, 450]), cfg)
    last = {t: peers.test_origins(test, 10)[0].tolist() for t, (_, test) in frames.items()}
    nexts = {t: peers.test_origins(test, 10)[1].tolist() for t, (_, test) in frames.items()}
    assert peers.peer_mase(last, frames, 10)["test_mase"] == pytest.approx(1.0)  # naive
    assert peers.peer_mase(nexts, frames, 10)["test_mase"] == pytest.approx(0.0)  # perfect
    halfway = {
        t: ((np.array(a) + np.array(b)) / 2).tolist()
        for (t, a), b in zip(last.items(), nexts.values(), strict=True)
    }
    assert peers.peer_mase(halfway, frames, 10)["test_mase"] == pytest.approx(0.5)
    short = {t: p[:-1] for t, p in last.items()}
    with pytest.raises(ValueError, match="forecasts for"):
        peers.peer_mase(short, frames, 10)


def test_windows_per_second_counts_every_epoch():
    assert peers.windows_per_s(13_119 * 2, 4.0) == pytest.approx(6_559.5)
    assert peers.windows_per_s(100, 0.0) == 0.0


def contender(fit: float, epochs: float, mase: float) -> dict:
    return {"windows_per_s_fit": fit, "windows_per_s_epochs": epochs, "test_mase": mase}


def test_the_goal_is_1_5x_the_faster_peer_at_a_mase_no_worse():
    contenders = {
        "ours_quantile": contender(6_000, 7_000, 0.99),
        "ours_point": contender(1, 1, 5.0),  # only the default model counts
        "darts": contender(3_000, 3_500, 9.9),
        "neuralforecast": contender(3_500, 4_000, 1.03),
    }
    goal = peers.goal(contenders)
    assert goal["faster_peer_fit"] == "neuralforecast"
    assert goal["ours_vs_faster_peer_fit"] == pytest.approx(6_000 / 3_500)
    assert goal["ours_vs_faster_peer_epochs"] == pytest.approx(7_000 / 4_000)
    assert goal["mase_no_worse_than_every_peer"] and goal["met"]
    contenders["neuralforecast"]["test_mase"] = 0.98
    assert not peers.goal(contenders)["met"]
    contenders["neuralforecast"] = contender(4_001, 4_000, 1.03)
    assert not peers.goal(contenders)["met"]  # 6,000 < 1.5 x 4,001


def test_darts_runs_twice_and_the_unscaled_run_only_when_asked():
    args = argparse.Namespace(peers=["darts", "neuralforecast"], darts_unscaled=False)
    assert [name for name, _, _ in peers.peer_runs(args)] == [
        "darts",
        "darts_rinorm",
        "neuralforecast",
    ]
    args = argparse.Namespace(peers=["darts"], darts_unscaled=True)
    assert [(n, s) for n, s, _ in peers.peer_runs(args)] == [
        ("darts", "scaler"),
        ("darts_rinorm", "rinorm"),
        ("darts_no_scaler", "none"),
    ]
