"""Input drift (drift.py): the training profile, each ticker's z against it, the warning line."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.drift import (
    DAYS,
    DRIFT_THRESHOLD,
    MIN_SCALE,
    drift_scores,
    drift_warning,
    profile_of,
    z_scores,
)
from tests.synthetic import make_prices


def bars(close, volume) -> pd.DataFrame:
    """A frame of closes and volumes on business days (the columns drift reads)."""
    index = pd.bdate_range("2024-01-01", periods=len(close))
    return pd.DataFrame({"Close": close, "Volume": volume}, index=index, dtype=float)


def prices(seed: int, factor: float = 1.0, days: int = 30, n: int = 400) -> pd.DataFrame:
    """make_prices' bars indexed by date, the last `days` daily log returns times `factor` (a
    regime break: OHLC keep their order, the volume its level)."""
    frame = make_prices(n, seed)
    returns = np.diff(np.log(frame["Close"].to_numpy()))
    returns[-days:] *= factor
    close = frame["Close"].iloc[0] * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    ratio = close / frame["Close"].to_numpy()
    for column in ("Open", "High", "Low", "Close", "Adj Close"):
        frame[column] = frame[column] * ratio
    return frame.set_index(pd.DatetimeIndex(frame.pop("Date")))


TRAIN_ROWS = 240  # the train split of 400 rows at the default fractions (60%)


def test_z_is_the_distance_from_the_training_median_in_robust_standard_deviations():
    close, volume = [100.0, 101.0, 100.0, 102.0], [0.0, 10.0, 20.0, 30.0]
    returns = [math.log(101 / 100), math.log(100 / 101), math.log(102 / 100)]
    mean = sum(returns) / 3
    volatility = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)  # by hand, ddof 1
    profile = {
        "days": 3,
        "stats": ["log_volatility", "log_volume"],
        "tickers": {"AAA": [-4.0, 0.5, 3.0, 0.2]},
        "pooled": [-5.0, 1.0, 2.0, 0.01],  # MAD 0.01: the floor MIN_SCALE applies
    }
    frames = {"AAA": bars(close, volume), "NEW": bars(close, volume)}
    z = z_scores(profile, frames)
    expected_aaa = [
        (math.log(volatility) + 4.0) / (1.4826 * 0.5),
        (math.log(20 + 1) - 3.0) / (1.4826 * 0.2),
    ]
    expected_new = [(math.log(volatility) + 5.0) / 1.4826, (math.log(21) - 2.0) / MIN_SCALE]
    assert z.loc["AAA"].tolist() == pytest.approx(expected_aaa, rel=1e-12)
    assert z.loc["NEW"].tolist() == pytest.approx(expected_new, rel=1e-12)  # pooled
    scores = drift_scores(profile, frames)
    assert scores.name == "input_drift"
    assert scores["AAA"] == pytest.approx(max(abs(x) for x in expected_aaa))


def test_the_profile_keeps_median_and_mad_of_each_span_per_ticker_and_pooled():
    frames = {"AAA": prices(0).iloc[:TRAIN_ROWS], "BBB": prices(1).iloc[:TRAIN_ROWS]}
    profile = profile_of(frames)
    assert profile is not None and profile["days"] == DAYS
    aaa = frames["AAA"]
    returns = np.diff(np.log(aaa["Close"].to_numpy()))
    spans = len(aaa) - DAYS
    log_vol = [math.log(np.std(returns[i : i + DAYS], ddof=1)) for i in range(spans)]
    volume = aaa["Volume"].to_numpy()[1:]
    log_volume = [math.log(volume[i : i + DAYS].mean() + 1) for i in range(spans)]
    expected = []
    for values in (np.array(log_vol), np.array(log_volume)):
        median = np.median(values)
        expected += [median, np.median(np.abs(values - median))]
    assert profile["tickers"]["AAA"] == pytest.approx(expected, abs=1e-4)
    assert set(profile["tickers"]) == {"AAA", "BBB"} and len(profile["pooled"]) == 4
    assert json.loads(json.dumps(profile)) == profile  # JSON as it is


def test_tickers_too_short_for_a_span_are_left_out_of_the_profile_and_score_nan():
    long, short = prices(0).iloc[:TRAIN_ROWS], prices(1).iloc[:DAYS]  # DAYS rows: DAYS - 1 returns
    profile = profile_of({"AAA": long, "BBB": short})
    assert profile is not None and list(profile["tickers"]) == ["AAA"]
    assert profile_of({"BBB": short}) is None
    scores = drift_scores(profile, {"AAA": long, "BBB": short, "CCC": long.iloc[: DAYS + 1]})
    assert math.isnan(scores["BBB"]) and np.isfinite(scores[["AAA", "CCC"]]).all()
    assert list(scores.index) == ["AAA", "BBB", "CCC"]


def test_a_volatility_regime_break_x4_is_flagged_and_an_unchanged_regime_is_not():
    """30 synthetic tickers, each profiled on its own train rows, scored on its last 60."""
    unchanged, broken = [], []
    for seed in range(30):
        profile = profile_of({"T": prices(seed).iloc[:TRAIN_ROWS]})
        assert profile is not None
        unchanged.append(drift_scores(profile, {"T": prices(seed).iloc[-60:]})["T"])
        broken.append(drift_scores(profile, {"T": prices(seed, factor=4.0).iloc[-60:]})["T"])
    assert min(broken) > DRIFT_THRESHOLD
    # measured on seeds 0..299: 7 false alarms (2.3%), the largest unchanged score p99 3.3
    assert sum(score > DRIFT_THRESHOLD for score in unchanged) <= 1
    assert np.median(broken) > 2 * DRIFT_THRESHOLD > 2 * np.median(unchanged)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 50), scale=st.floats(1e-3, 1e4))
def test_scaling_a_tickers_prices_leaves_its_drift_unchanged(seed, scale):
    frame = prices(seed, n=120)
    profile = profile_of({"T": frame.iloc[:80]})
    assert profile is not None
    scaled = frame.assign(Close=frame["Close"] * scale)
    for rows in (frame.iloc[-60:], frame.iloc[-21:]):
        z = z_scores(profile, {"T": rows}).loc["T"]
        z_scaled = z_scores(profile, {"T": scaled.loc[rows.index]}).loc["T"]
        assert z_scaled.tolist() == pytest.approx(z.tolist(), abs=1e-6)


def degenerate(kind: str, rows: int, level: float) -> pd.DataFrame:
    """A ticker whose prices or volume never change (MAD 0), or that never trades."""
    frame = prices(0, n=rows)
    if kind == "constant volume":
        return frame.assign(Volume=level)
    if kind == "no volume":
        return frame.assign(Volume=0.0)
    return frame.assign(Close=level)  # constant prices: volatility 0


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["constant volume", "no volume", "constant prices"]),
    level=st.floats(1e-2, 1e9),
    rows=st.integers(DAYS + 1, 90),
    recent=st.sampled_from(["same", "changed"]),
)
def test_a_ticker_whose_inputs_never_varied_gets_a_finite_score(kind, level, rows, recent):
    """MAD 0 divides by MIN_SCALE, not by 0: the same input has z 0, a change a finite z."""
    train = degenerate(kind, rows, level)
    profile = profile_of({"T": train})
    assert profile is not None and all(np.isfinite(profile["tickers"]["T"]))
    later = train if recent == "same" else prices(3, n=rows)
    scores = drift_scores(profile, {"T": later, "NEW": later})
    assert np.isfinite(scores).all(), scores
    if recent == "same":  # the stat that never varied is where it always was
        stat = "log_volatility" if kind == "constant prices" else "log_volume"
        assert z_scores(profile, {"T": later}).loc["T", stat] == pytest.approx(0.0, abs=1e-3)


def test_the_warning_names_the_most_drifted_first_ten_and_how_many_more():
    scores = pd.Series({f"T{i:02d}": float(i) for i in range(20)} | {"NAN": math.nan})
    line = drift_warning(scores, DAYS)
    assert line is not None and "\n" not in line
    assert line.startswith(f"input drift in 16 of 20 ticker(s): the last {DAYS} days' ")
    named = ", ".join(f"T{i:02d} {i:.1f}" for i in range(19, 9, -1))
    assert line.endswith(f"from the model's training data: {named}, and 6 more")
    assert drift_warning(scores.clip(upper=DRIFT_THRESHOLD), DAYS) is None  # 3.0 is no drift


def test_the_profile_of_5000_tickers_stays_a_few_hundred_kilobytes():
    frames = {f"T{i:04d}.XX": prices(i % 7, n=2 * DAYS).iloc[: DAYS + 5] for i in range(5000)}
    profile = profile_of(frames)
    size = len(json.dumps(profile, separators=(",", ":")))
    assert 100_000 < size < 300_000, size  # ~50 bytes a ticker
