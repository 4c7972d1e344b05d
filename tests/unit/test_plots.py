"""The figures every run logs: what each one draws, read back from the matplotlib objects."""

import io

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_the_loss_curve_draws_both_losses_per_epoch_and_marks_the_best_epoch():
    history = [
        {"train_loss": 1.0, "val_loss": 1.2},
        {"train_loss": 0.7, "val_loss": 0.9},
        {"train_loss": 0.5, "val_loss": 1.1},
    ]
    fig = plots.loss_curve(history, best_epoch=2)
    (ax,) = fig.axes
    train, val, best = ax.get_lines()
    for line, key in ((train, "train_loss"), (val, "val_loss")):
        assert line.get_label() == key
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        assert list(line.get_ydata()) == [h[key] for h in history]
    assert best.get_label() == "best epoch 2" and list(best.get_xdata()) == [2, 2]
    assert ax.get_title() == "Loss per epoch" and ax.get_xlabel() == "epoch"
    assert png_bytes(fig).startswith(PNG_SIGNATURE)


def span_data(n: int = 30) -> dict:
    """Three tickers of n consecutive windows each: as_of, actual and forecast per window."""
    days = pd.bdate_range("2024-01-01", periods=n).to_numpy()
    rng = np.random.default_rng(0)
    actual = 100 + rng.normal(0, 1, (3 * n, 2)).cumsum(axis=0)
    return {
        "tickers": ("AAA", "BBB", "CCC"),
        "ticker_ids": np.repeat(np.arange(3), n),
        "as_of": np.concatenate([days, days, days]),
        "actual": actual,
        "forecast": actual + rng.normal(0, 0.5, actual.shape),
    }


@pytest.fixture
def span():
    return span_data()


def test_actual_vs_forecast_draws_each_day_against_the_forecast_made_the_day_before(span):
    fig = plots.actual_vs_forecast(**span, test_mase=0.987)
    assert len(fig.axes) == 4  # three panels in two columns; the fourth is hidden
    assert [ax.get_visible() for ax in fig.axes] == [True, True, True, False]
    assert fig.get_suptitle() == (
        "Test span: actual vs 1-day forecast (test MASE all horizons 0.987)"
    )
    for i, (ax, ticker) in enumerate(zip(fig.axes, span["tickers"], strict=False)):
        assert ax.get_title() == ticker
        mask = span["ticker_ids"] == i
        actual, forecast = ax.get_lines()
        # window k's 1-day target is the last close of window k + 1: drawn at that day
        for line in (actual, forecast):
            np.testing.assert_array_equal(line.get_xdata(), span["as_of"][mask][1:])
        np.testing.assert_array_equal(actual.get_ydata(), span["actual"][mask][:-1, 0])
        np.testing.assert_array_equal(forecast.get_ydata(), span["forecast"][mask][:-1, 0])
    assert png_bytes(fig).startswith(PNG_SIGNATURE)


def test_the_zoomed_figure_shows_only_the_last_days_with_markers(span):
    fig = plots.actual_vs_forecast(**span, test_mase=1.5, last_days=5)
    assert fig.get_suptitle().startswith("last 5 trading days of the test span")
    mask = span["ticker_ids"] == 1
    actual, forecast = fig.axes[1].get_lines()
    np.testing.assert_array_equal(actual.get_xdata(), span["as_of"][mask][-5:])
    np.testing.assert_array_equal(forecast.get_ydata(), span["forecast"][mask][-6:-1, 0])
    assert actual.get_marker() == "."


def test_one_ticker_gets_one_panel():
    n = 10
    days = pd.bdate_range("2024-01-01", periods=n).to_numpy()
    actual = np.linspace(100, 110, n)[:, None]
    fig = plots.actual_vs_forecast(("AAA",), np.zeros(n, int), days, actual, actual, 1.0)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "AAA"


def test_residuals_set_the_model_beside_naive_at_the_first_and_last_horizon():
    actual = np.array([[100.0, 100.0, 100.0], [200.0, 200.0, 200.0]])
    forecast = np.array([[101.0, 102.0, 104.0], [198.0, 204.0, 192.0]])
    last_close = np.array([99.0, 202.0])
    fig = plots.residual_histogram(forecast, actual, last_close)
    assert [ax.get_title() for ax in fig.axes] == ["h=1", "h=3"]
    # errors in % of the actual price: model h=1 is +1% and -1%, naive -1% and +1%
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels == ["naive (MAE 1.00%)", "model (MAE 1.00%)"]
    labels = [text.get_text() for text in fig.axes[1].get_legend().get_texts()]
    assert labels == ["naive (MAE 1.00%)", "model (MAE 4.00%)"]  # +4% and -4% at h=3
    assert png_bytes(fig).startswith(PNG_SIGNATURE)


def test_residuals_of_a_one_step_horizon_are_one_panel():
    actual = np.array([[100.0], [50.0]])
    fig = plots.residual_histogram(actual * 1.02, actual, np.array([100.0, 50.0]))
    assert [ax.get_title() for ax in fig.axes] == ["h=1"]
