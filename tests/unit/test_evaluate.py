import numpy as np
import pytest

from lstm_pipeline.evaluate import score_forecasts


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
