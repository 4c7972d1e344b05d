"""The promotion gate: the rule, the shared windows, and both models scored alike."""

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.evaluate import score_forecasts
from lstm_pipeline.features import build_window_sets
from lstm_pipeline.gate import (
    GateScores,
    IntervalScores,
    decide,
    gate_windows,
    longest_history,
    score_both,
)
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


@pytest.mark.parametrize(
    "coverage,skill,promoted,why",
    [
        (0.80, 0.02, True, "80% interval covers 80.0%, CRPS skill vs rw +2.0%"),
        (0.75, 0.0, True, "80% interval covers 75.0%"),  # the band's edges and a tie with rw pass
        (0.85, 0.0, True, "80% interval covers 85.0%"),
        (0.74, 0.02, False, "its 80% interval covers 74.0% of validation prices (needs 75%..85%)"),
        (0.86, 0.02, False, "its 80% interval covers 86.0% of validation prices (needs 75%..85%)"),
        (0.80, -0.01, False, "its validation CRPS loses to the random walk's (CRPS skill -1.0%)"),
        (float("nan"), 0.02, False, "covers nan% of validation prices"),
        (0.80, float("nan"), False, "loses to the random walk's"),
    ],
)
def test_a_model_whose_intervals_miss_or_lose_to_the_random_walk_is_not_promoted(
    coverage, skill, promoted, why
):
    decision = decide(scores(0.95), 0.0, IntervalScores(coverage, skill))
    assert decision.promote is promoted
    assert why in decision.reason and decision.intervals == IntervalScores(coverage, skill)


def test_interval_problems_add_to_a_mase_problem_and_a_point_model_has_none():
    both = decide(scores(1.2), 0.0, IntervalScores(0.6, -0.1)).reason
    assert "does not beat the naive forecast" in both and "covers 60.0%" in both
    assert "loses to the random walk's" in both
    assert IntervalScores.from_metrics({"val_mase": 0.9}) is None  # a point model's metrics
    metrics = {"val_coverage_80": 0.8, "val_crpss_rw": 0.01}
    assert IntervalScores.from_metrics(metrics) == IntervalScores(0.8, 0.01)


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


# The class of issue 13's SIGABRT: whatever the champion and the windows, the gate ends in a
# decision with a reason, and no model is ever run on zero windows (onnxruntime aborts the
# whole process on an empty batch: no error line, no JSON, the MLflow run left RUNNING).


@pytest.fixture(autouse=True)
def no_empty_batches(monkeypatch):
    """Every forecast still runs in onnxruntime, but an empty batch fails the test instead of
    aborting the test process."""
    real = OnnxForecaster.predict

    def predict(self, windows):
        assert len(windows) > 0, "a model was run on zero windows"
        return real(self, windows)

    monkeypatch.setattr(OnnxForecaster, "predict", predict)


def with_features(source: Path, target: Path, features: str) -> Path:
    """A copy of the ONNX model `source` whose metadata lists `features` instead."""
    model = onnx.load_model(str(source))
    for prop in model.metadata_props:
        if prop.key == "features":
            prop.value = features
    onnx.save_model(model, str(target))
    return target


def no_windows(val):
    return replace(val, starts=val.starts[:0], targets=val.targets[:0],
                   ticker_ids=val.ticker_ids[:0], as_of=val.as_of[:0])  # fmt: skip


def test_a_champion_whose_window_outgrows_every_validation_segment_is_reported_not_run(
    frames, tmp_path
):
    new_path, old_path = tmp_path / "new.onnx", tmp_path / "old.onnx"
    export_tiny_model(new_path, window=6, horizon=3, seed=1)
    export_tiny_model(old_path, window=60, horizon=5, seed=2)  # the default window
    val = val_windows(frames, window=6)
    assert longest_history(val) < 60
    result = score_both(new_path, ("1", old_path), val)
    assert (result.champion_mase, result.champion_version) == (None, "1")
    assert result.windows == len(val) and np.isfinite(result.new_mase)  # its own windows
    assert not result.compared
    decision = decide(result, 0.0)
    assert not decision.promote
    assert decision.reason.startswith(
        f"not promoted: champion v1 cannot be scored on these windows (its window of 60 days "
        f"is longer than the {longest_history(val)} days of the longest validation segment here)"
    )


def test_with_no_validation_windows_no_model_is_run_and_nothing_is_promoted(frames, tmp_path):
    new_path = tmp_path / "new.onnx"
    export_tiny_model(new_path, window=6, horizon=3)
    empty = no_windows(val_windows(frames, window=6))
    alone = decide(score_both(new_path, None, empty), 0.0)
    assert not alone.promote and alone.scores.windows == 0
    assert alone.reason == (
        "not promoted: there are no validation windows to score it on; "
        "on 0 validation windows, horizons 1..3"
    )
    beside = decide(score_both(new_path, ("4", new_path), empty), 0.0)
    assert not beside.promote and "; champion v4 cannot be scored on these windows" in beside.reason


def test_a_champion_with_other_features_is_reported_not_scored(frames, tmp_path):
    path = tmp_path / "new.onnx"
    export_tiny_model(path, window=6, horizon=3)
    reordered = ",".join(reversed(FEATURES))
    old = with_features(path, tmp_path / "old.onnx", reordered)
    result = score_both(path, ("5", old), val_windows(frames, window=6))
    # named by its version: its file is a download that is gone once the run ends
    assert (
        result.champion_mase is None and f"champion v5 takes features '{reordered}'" in result.note
    )
    assert not decide(result, 0.0).promote


_MODELS = Path(tempfile.mkdtemp(prefix="gate-models-"))


def tiny_model(window: int, horizon: int) -> Path:
    """One exported tiny model per shape, shared by the examples below."""
    path = _MODELS / f"w{window}-h{horizon}.onnx"
    if not path.exists():
        export_tiny_model(path, window=window, horizon=horizon)
    return path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(60, 400),
    new_shape=st.tuples(st.integers(2, 30), st.integers(1, 5)),
    old_shape=st.tuples(st.sampled_from([2, 5, 10, 30, 60, 90, 150, 400]), st.integers(1, 6)),
    kind=st.sampled_from(["none", "model", "other-features", "garbage", "no-windows"]),
)
def test_every_champion_and_window_combination_ends_in_a_decision(rows, new_shape, old_shape, kind):
    frames = {}
    for seed, ticker in enumerate(("AAA", "BBB")):
        frame = make_prices(rows + 40 * seed, seed=seed)  # tickers of unequal length
        frames[ticker] = frame.set_index(pd.to_datetime(frame["Date"]))[list(FEATURES)]
    try:
        val = val_windows(frames, window=new_shape[0], horizon=new_shape[1])
    except ValueError:  # too few rows for this window: the training refuses it before a gate
        return
    new = tiny_model(*new_shape)
    champion = None
    if kind in ("model", "no-windows"):
        champion = ("9", tiny_model(*old_shape))
    elif kind == "other-features":
        champion = ("9", with_features(tiny_model(*old_shape), _MODELS / "other.onnx", "a,b,c,d,e"))
    elif kind == "garbage":
        (_MODELS / "garbage.onnx").write_bytes(b"not a model")
        champion = ("9", _MODELS / "garbage.onnx")
    if kind == "no-windows":
        val = no_windows(val)
    decision = decide(score_both(new, champion, val), 0.0)
    assert decision.reason.startswith("promoted: " if decision.promote else "not promoted: ")
    scores = decision.scores
    if champion is not None:
        assert scores.champion_version == "9"
        assert scores.compared or not decision.promote  # never promoted without a comparison
        assert scores.compared or scores.note
    if kind in ("other-features", "garbage", "no-windows"):
        assert not scores.compared and not decision.promote
    if kind == "model" and old_shape[0] <= longest_history(val):
        assert scores.compared and scores.windows > 0
        assert scores.horizons == min(new_shape[1], old_shape[1])
