"""The promotion gate: the rule, the shared windows, and both models scored alike."""

import numpy as np
import pandas as pd
import pytest
import torch

from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.evaluate import score_forecasts
from lstm_pipeline.features import build_window_sets
from lstm_pipeline.gate import GateScores, decide, gate_windows, score_both
from lstm_pipeline.predict import OnnxForecaster
from tests.conftest import export_tiny_model, make_prices


def scores(new: float, old: float | None = None, version: str | None = None) -> GateScores:
    return GateScores(new, old, version if version else ("3" if old is not None else None), 100, 3)


@pytest.mark.parametrize(
    "new,old,margin,promoted,why",
    [
        (0.95, None, 0.0, True, "no previous champion"),
        (1.0, None, 0.0, True, "<= 1.0000 (naive)"),  # margin 0: no worse than naive
        (1.01, None, 0.0, False, "does not beat the naive forecast (needs <= 1.0000)"),
        (0.95, None, 0.1, False, "(needs <= 0.9000)"),
        (0.90, 0.90, 0.0, True, "champion v3's 0.9000"),  # a tie with the champion promotes
        (0.91, 0.90, 0.0, False, "worse than champion v3's 0.9000 (needs <= 0.9000)"),
        (0.86, 0.90, 0.05, False, "(needs <= 0.8550)"),  # 5% better than the champion
        (0.85, 0.90, 0.05, True, "champion v3's 0.9000"),
        (float("nan"), None, 0.0, False, "does not beat the naive forecast"),
    ],
)
def test_promotes_only_when_beating_naive_and_the_champion_by_the_margin(
    new, old, margin, promoted, why
):
    decision = decide(scores(new, old), margin)
    assert decision.promote is promoted
    assert decision.reason.startswith("promoted" if promoted else "not promoted")
    assert why in decision.reason and "on 100 validation windows, horizons 1..3" in decision.reason


def test_a_champion_that_cannot_be_scored_blocks_automatic_promotion():
    unscorable = GateScores(0.5, None, "7", 100, 3, "it takes features A,B, not C")
    decision = decide(unscorable, 0.0)
    assert not decision.promote
    assert "champion v7 cannot be scored on these windows (it takes features A,B" in decision.reason


@pytest.fixture
def frames() -> dict[str, pd.DataFrame]:
    out = {}
    for seed, ticker in enumerate(("AAA", "BBB")):
        frame = make_prices(200, seed=seed)
        out[ticker] = frame.set_index(pd.to_datetime(frame["Date"]))[list(FEATURES)]
    return out


def val_windows(frames, window: int, horizon: int = 3):
    return build_window_sets(frames, FeatureConfig(window=window, horizon=horizon))["val"]


def test_longer_gate_windows_end_on_the_same_days_with_the_same_targets(frames):
    val = val_windows(frames, window=6)
    data = gate_windows(val, 9)
    per_ticker = np.bincount(val.ticker_ids)
    assert len(data.actual) == len(val) - 2 * 3  # each ticker loses its first 3 windows
    kept = np.concatenate(
        [np.arange(3, n) + per_ticker[:i].sum() for i, n in enumerate(per_ticker)]
    )
    for j in (0, 17, len(kept) - 1):
        i = kept[j]
        ticker = val.tickers[val.ticker_ids[i]]
        expected = frames[ticker].loc[: val.as_of[i]].tail(9).to_numpy(np.float32)
        np.testing.assert_array_equal(data.windows[j], expected)  # straight from the prices
        close = frames[ticker]["Close"]
        day = close.index.get_loc(val.as_of[i])
        np.testing.assert_allclose(data.actual[j], close.iloc[day + 1 : day + 4], rtol=1e-6)
        assert data.last_close[j] == pytest.approx(close.iloc[day], rel=1e-6)


def test_gate_windows_of_the_runs_own_length_are_all_its_windows(frames):
    val = val_windows(frames, window=6)
    data = gate_windows(val, 6)
    assert data.windows.shape == (len(val), 6, len(FEATURES))
    np.testing.assert_array_equal(data.windows, val.inputs(torch.arange(len(val))).numpy())


def test_both_models_are_scored_on_the_same_targets_and_shared_horizons(frames, tmp_path):
    new_path, old_path = tmp_path / "new.onnx", tmp_path / "old.onnx"
    export_tiny_model(new_path, window=6, horizon=3, seed=1)
    export_tiny_model(old_path, window=9, horizon=2, seed=2)  # longer window, fewer horizons
    val = val_windows(frames, window=6)
    result = score_both(new_path, ("4", old_path), val)
    assert (result.champion_version, result.horizons, result.windows) == ("4", 2, len(val) - 6)

    data = gate_windows(val, 9)
    for path, got, window in ((new_path, result.new_mase, 6), (old_path, result.champion_mase, 9)):
        forecast = OnnxForecaster(path).predict(data.windows[:, -window:])[:, :2]
        expected = score_forecasts(forecast, data.actual[:, :2], data.last_close)["test_mase"]
        assert got == pytest.approx(expected, rel=1e-9)
    assert result.new_mase != result.champion_mase


def test_without_a_champion_the_new_model_is_scored_on_all_its_windows(frames, tmp_path):
    path = tmp_path / "new.onnx"
    export_tiny_model(path, window=6, horizon=3)
    result = score_both(path, None, val_windows(frames, window=6))
    assert result.champion_mase is None and result.champion_version is None
    assert result.windows == len(val_windows(frames, window=6)) and result.horizons == 3


def test_a_champion_file_that_does_not_load_is_reported_not_scored(frames, tmp_path):
    path, broken = tmp_path / "new.onnx", tmp_path / "broken.onnx"
    export_tiny_model(path, window=6, horizon=3)
    broken.write_bytes(b"not a model")
    result = score_both(path, ("2", broken), val_windows(frames, window=6))
    assert result.champion_mase is None and result.champion_version == "2"
    assert "is not a loadable ONNX model" in result.note
    assert not decide(result, 0.0).promote
