import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.evaluate import TABLE_COLUMNS, score_forecasts, scores_by_ticker_horizon


@pytest.fixture
def actual_and_last():
    rng = np.random.default_rng(0)
    last = rng.uniform(50, 150, 200)
    actual = last[:, None] * np.exp(rng.normal(0, 0.02, (200, 3)))
    return actual, last


def test_perfect_forecast_scores_zero_error_and_full_direction(actual_and_last):
    actual, last = actual_and_last
    s = score_forecasts(actual.copy(), actual, last)
    assert s["test_mae"] == 0 and s["test_mase"] == 0 and s["test_directional_accuracy"] == 1
    assert s["naive_test_mae"] > 0 and s["test_mase_h3"] == 0


def test_naive_forecast_has_mase_one(actual_and_last):
    actual, last = actual_and_last
    naive = np.repeat(last[:, None], 3, axis=1)
    s = score_forecasts(naive, actual, last, prefix="val")
    assert s["val_mase"] == pytest.approx(1.0) and s["val_mae"] == s["naive_val_mae"]
    assert all(s[f"val_mase_h{k}"] == pytest.approx(1.0) for k in (1, 2, 3))


def test_always_up_scores_the_share_of_up_moves(actual_and_last):
    actual, last = actual_and_last
    s = score_forecasts(last[:, None] * 1.01 + 0 * actual, actual, last)
    up_share = (actual > last[:, None]).mean()
    assert s["test_directional_accuracy"] == pytest.approx(up_share)
    assert s["test_direction_base_rate"] == pytest.approx(max(up_share, 1 - up_share))


def per_ticker_reference(forecast, actual, last, ids, tickers):
    """score_forecasts on each ticker's windows (a mask per ticker), then on all of them."""
    groups = [(name, ids == i) for i, name in enumerate(tickers)]
    groups.append(("ALL", np.ones(len(ids), dtype=bool)))
    rows = []
    for name, mask in groups:
        for k in range(actual.shape[1]):
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no windows
                s = score_forecasts(forecast[mask, k : k + 1], actual[mask, k : k + 1], last[mask])
            rows.append(
                {"ticker": name, "horizon": k + 1, "windows": int(mask.sum())}
                | {column: s[key] for column, key in zip(TABLE_COLUMNS[3:], KEYS, strict=True)}
            )
    return rows


KEYS = ("test_mae", "naive_test_mae", "test_mase", "test_directional_accuracy")
KEYS += ("test_direction_base_rate",)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the mean of no windows
@settings(max_examples=60, deadline=None)
@given(
    tickers=st.integers(1, 5),
    windows=st.integers(0, 40),
    horizons=st.integers(1, 3),
    flat=st.floats(0, 1),
    seed=st.integers(0, 1000),
)
def test_per_ticker_scores_equal_score_forecasts_on_each_tickers_windows(
    tickers, windows, horizons, flat, seed
):
    """Tickers with no windows, flat days (no direction, or a naive error of 0), ties."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, tickers, windows)
    last = rng.choice([10.0, 20.0, 30.0], windows)
    moves = rng.choice([-1.0, 0.0, 1.0], (windows, horizons))
    actual = last[:, None] + moves * (rng.random((windows, horizons)) > flat)
    forecast = last[:, None] + rng.choice([-1.0, 0.0, 0.5, 1.0], (windows, horizons))
    names = tuple(f"T{i}" for i in range(tickers))
    got = scores_by_ticker_horizon(forecast, actual, last, ids, names)
    expected = per_ticker_reference(forecast, actual, last, ids, names)
    assert [list(row.items())[:3] for row in got] == [list(r.items())[:3] for r in expected]
    for row, want in zip(got, expected, strict=True):
        assert list(row) == list(want)
        for column in TABLE_COLUMNS[3:]:
            assert type(row[column]) is float
            np.testing.assert_allclose(row[column], want[column], rtol=1e-12, atol=0)
