"""The figures every run logs: what each one draws, read back from the matplotlib objects."""

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    chosen = [("CCC", "worst MASE 1.200"), ("AAA", "best MASE 0.800"), ("BBB", "median")]
    fig = plots.actual_vs_forecast(chosen, **span, test_mase=0.987)
    assert len(fig.axes) == 4  # three panels in two columns; the fourth is hidden
    assert [ax.get_visible() for ax in fig.axes] == [True, True, True, False]
    assert fig.get_suptitle() == (
        "Test span: actual vs 1-day forecast, 3 of 3 tickers (test MASE all horizons 0.987)"
    )
    for ax, (ticker, why) in zip(fig.axes, chosen, strict=False):
        assert ax.get_title() == f"{ticker}: {why}"
        mask = span["ticker_ids"] == span["tickers"].index(ticker)
        actual, forecast = ax.get_lines()
        # window k's 1-day target is the last close of window k + 1: drawn at that day
        for line in (actual, forecast):
            np.testing.assert_array_equal(line.get_xdata(), span["as_of"][mask][1:])
        np.testing.assert_array_equal(actual.get_ydata(), span["actual"][mask][:-1, 0])
        np.testing.assert_array_equal(forecast.get_ydata(), span["forecast"][mask][:-1, 0])
    assert png_bytes(fig).startswith(PNG_SIGNATURE)


def test_the_zoomed_figure_shows_only_the_last_days_with_markers(span):
    fig = plots.actual_vs_forecast([("BBB", "why")], **span, test_mase=1.5, last_days=5)
    assert fig.get_suptitle().startswith("Last 5 trading days of the test span")
    mask = span["ticker_ids"] == 1
    actual, forecast = fig.axes[0].get_lines()
    np.testing.assert_array_equal(actual.get_xdata(), span["as_of"][mask][-5:])
    np.testing.assert_array_equal(forecast.get_ydata(), span["forecast"][mask][-6:-1, 0])
    assert actual.get_marker() == "."


def test_one_ticker_gets_one_panel():
    n = 10
    days = pd.bdate_range("2024-01-01", periods=n).to_numpy()
    actual = np.linspace(100, 110, n)[:, None]
    chosen = [("AAA", "MASE 1.000")]
    fig = plots.actual_vs_forecast(chosen, ("AAA",), np.zeros(n, int), days, actual, actual, 1.0)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "AAA: MASE 1.000"


def test_actual_vs_forecast_of_500_tickers_draws_the_chosen_few_under_a_megabyte():
    n = 250
    data = span_data(n)  # three tickers' dates, repeated for 500 white-noise tickers
    rng = np.random.default_rng(4)
    actual = 100 + rng.normal(0, 1, (500 * n, 2))  # the hardest lines to compress
    tickers = tuple(f"T{i:03d}" for i in range(500))
    ids, as_of = np.repeat(np.arange(500), n), np.tile(data["as_of"][:n], 500)
    per_ticker = {t: {"mase": rng.uniform(0.8, 1.2), "mae": rng.uniform(1, 9)} for t in tickers}
    chosen = plots.forecast_tickers({t: s | {"windows": n} for t, s in per_ticker.items()}, 6)
    for last_days in (None, 120):
        fig = plots.actual_vs_forecast(
            chosen, tickers, ids, as_of, actual, actual + 1, 1.0, last_days
        )
        assert sum(ax.get_visible() for ax in fig.axes) == 6 == len(fig.axes)
        assert "6 of 500 tickers" in fig.get_suptitle()
        assert len(png_bytes(fig)) < 1_000_000


def test_actual_vs_forecast_refuses_more_panels_than_it_keeps_small(span):
    with pytest.raises(ValueError, match="9 panels; choose 1 to 8 tickers"):
        plots.actual_vs_forecast([("AAA", "")] * 9, **span, test_mase=1.0)


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


LEVELS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
OFFSETS = np.array([-4.0, -3, -2, -1, 0, 1, 2, 3, 4])  # the fan around 100 at LEVELS


def scores(coverage_80: float, crpss_rw: float, windows: int) -> dict[str, float]:
    return {"coverage_80": coverage_80, "crpss_rw": crpss_rw, "windows": windows}


def test_fan_tickers_shows_every_ticker_when_they_fit_each_with_its_figures():
    per_ticker = {"AAA": scores(0.8, 0.1, 5), "BBB": scores(0.5, -1, 9)}
    assert plots.fan_tickers(per_ticker) == [
        ("AAA", "80% coverage 80.0%, CRPS skill vs rw +10.0%"),
        ("BBB", "80% coverage 50.0%, CRPS skill vs rw -100.0%"),
    ]


def test_fan_tickers_picks_the_worst_and_best_by_coverage_and_skill_among_many():
    per_ticker = {f"T{i:02d}": scores(0.79, 0.05, 100) for i in range(20)}
    per_ticker |= {
        "OVER": scores(0.97, 0.02, 10),  # coverage error 0.17, the worst
        "EXACT": scores(0.8, 0.03, 10),  # coverage error 0, the best
        "LOSER": scores(0.75, -0.4, 10),
        "WINNER": scores(0.82, 0.3, 10),
    }
    assert plots.fan_tickers(per_ticker) == [
        ("OVER", "worst 80% coverage 97.0%"),
        ("LOSER", "worst CRPS skill vs rw -40.0%"),
        ("EXACT", "best 80% coverage 80.0%"),
        ("WINNER", "best CRPS skill vs rw +30.0%"),
    ]
    assert [t for t, _ in plots.fan_tickers(per_ticker, limit=2)] == ["OVER", "LOSER"]


def test_a_ticker_that_is_two_extremes_shows_once_and_the_most_windows_fill_the_set():
    per_ticker = {
        "BAD": scores(0.4, -0.9, 50),
        "GOOD": scores(0.8, 0.5, 50),
        "SMALL": scores(0.7, 0.0, 20),
        "BIG": scores(0.7, 0.0, 900),
        "MID": scores(0.7, 0.0, 400),
        "NAN": scores(float("nan"), float("nan"), 800),
    }
    assert plots.fan_tickers(per_ticker) == [
        ("BAD", "worst 80% coverage 40.0%, worst CRPS skill vs rw -90.0%"),
        ("GOOD", "best 80% coverage 80.0%, best CRPS skill vs rw +50.0%"),
        ("BIG", "most windows 900"),
        ("NAN", "most windows 800"),  # no score takes no extreme, but it has windows to show
    ]


def errors(mase: float, mae: float, windows: int = 100) -> dict[str, float]:
    return {"mase": mase, "mae": mae, "windows": windows}


def test_forecast_tickers_are_the_worst_best_and_median_by_mase_and_the_largest_mae():
    per_ticker = {
        "AAPL": errors(1.12, 2.0),
        "MSFT": errors(0.91, 3.0),
        "SPY": errors(1.00, 1.0),
        "NVDA": errors(0.99, 9.5),
        "TSLA": errors(1.01, 4.0),
        "INF": errors(float("inf"), 0.5, windows=900),  # naive MAE 0: no MASE to rank by
        "GOOG": errors(1.05, 1.5),
    }
    assert plots.forecast_tickers(per_ticker, limit=6) == [
        ("AAPL", "worst MASE 1.120"),
        ("MSFT", "best MASE 0.910"),
        # six finite MASEs: 0.91 0.99 1.00 1.01 1.05 1.12; of the middle two, the worse
        ("TSLA", "median MASE 1.010"),
        ("NVDA", "largest MAE 9.5"),
        ("INF", "most windows 900"),
        ("GOOG", "most windows 100"),  # windows tie: AAPL comes first by name, but is shown
    ]
    assert [t for t, _ in plots.forecast_tickers(per_ticker, limit=2)] == ["AAPL", "MSFT"]


def test_ties_go_to_the_first_ticker_by_name_at_either_end_and_one_ticker_takes_many_picks():
    per_ticker = {name: errors(1.0, 2.0) for name in ("DDD", "BBB", "CCC", "AAA")}
    # every score ties: AAA is worst, best and largest; the middle of AAA..DDD is BBB
    assert plots.forecast_tickers(per_ticker, limit=3) == [
        ("AAA", "worst MASE 1.000, best MASE 1.000, largest MAE 2"),
        ("BBB", "median MASE 1.000"),
        ("CCC", "most windows 100"),
    ]


def test_fewer_tickers_than_the_limit_are_all_shown_in_order_with_their_figures():
    per_ticker = {"ZZZ": errors(1.25, 3.5), "AAA": errors(0.75, 1.25)}
    assert plots.forecast_tickers(per_ticker, limit=6) == [
        ("ZZZ", "MASE 1.250, MAE 3.5"),
        ("AAA", "MASE 0.750, MAE 1.25"),
    ]
    assert plots.forecast_tickers({}, limit=6) == []


finite = st.floats(-2, 2, allow_nan=False)
score_dicts = st.builds(scores, st.floats(0, 1) | st.just(float("nan")), finite, st.integers(1, 9))


@settings(max_examples=60, deadline=None)
@given(
    per_ticker=st.dictionaries(st.text("ABCDEFGH", min_size=1, max_size=3), score_dicts),
    limit=st.integers(1, 8),
)
def test_fan_tickers_is_bounded_unique_and_keeps_the_extremes(per_ticker, limit):
    chosen = [ticker for ticker, _ in plots.fan_tickers(per_ticker, limit)]
    assert len(chosen) == min(limit, len(per_ticker))
    assert len(set(chosen)) == len(chosen) and set(chosen) <= set(per_ticker)
    if len(per_ticker) > limit >= 4:
        crpss = {t: s["crpss_rw"] for t, s in per_ticker.items()}
        assert min(crpss.values()) in {crpss[t] for t in chosen}
        assert max(crpss.values()) in {crpss[t] for t in chosen}
        errors = {t: abs(s["coverage_80"] - 0.8) for t, s in per_ticker.items()}
        finite_errors = [e for e in errors.values() if np.isfinite(e)]
        if finite_errors:
            assert max(finite_errors) in {errors[t] for t in chosen}
            assert min(finite_errors) in {errors[t] for t in chosen}


def fan_data(n_tickers: int, n: int, horizon: int = 2) -> dict:
    """n_tickers of n consecutive windows each; the fan is 100 + OFFSETS at every window."""
    days = pd.bdate_range("2024-01-01", periods=n).to_numpy()
    rng = np.random.default_rng(1)
    quantiles = np.broadcast_to(100 + OFFSETS, (n_tickers * n, horizon, len(LEVELS)))
    return {
        "tickers": tuple(f"T{i:03d}" for i in range(n_tickers)),
        "ticker_ids": np.repeat(np.arange(n_tickers), n),
        "as_of": np.tile(days, n_tickers),
        "actual": 100 + rng.normal(0, 2, (n_tickers * n, horizon)),
        "quantiles": quantiles,
        "levels": LEVELS,
    }


def test_the_fan_chart_draws_actual_median_and_both_bands_and_counts_what_they_hold():
    data = fan_data(3, 10)
    # T001's 1-day actuals: the last window's target lies past the span, so 9 days are drawn
    data["actual"][data["ticker_ids"] == 1, 0] = 100 + np.array(
        [0, 1.5, 2.5, 3.5, 5, 0, 0, 0, 0, 9]
    )
    fig = plots.fan_chart([("T001", "worst 80% coverage"), ("T002", "most windows")], **data)
    assert [ax.get_visible() for ax in fig.axes] == [True, True]
    assert fig.get_suptitle().startswith("Last 120 trading days of the test span: 1-day fan charts")
    ax = fig.axes[0]
    # inside 80% (100 +/- 2): 6 of 9 days; inside 95% (100 +/- 4): all but the 5 -> 8 of 9
    assert ax.get_title() == (
        "T001: worst 80% coverage\nthese days: actual inside the 80% band 67%, the 95% band 89%"
    )
    median, actual = ax.get_lines()
    assert (median.get_label(), actual.get_label()) == ("median", "actual close")
    days = data["as_of"][data["ticker_ids"] == 1][1:]
    np.testing.assert_array_equal(actual.get_xdata(), days)
    np.testing.assert_array_equal(
        actual.get_ydata(), 100 + np.array([0, 1.5, 2.5, 3.5, 5, 0, 0, 0, 0])
    )
    np.testing.assert_array_equal(median.get_ydata(), np.full(9, 100.0))
    band_95, band_80 = ax.collections
    for band, (name, half_width) in ((band_95, ("95%", 4)), (band_80, ("80%", 2))):
        assert band.get_label() == f"{name} interval"
        edges = np.unique(band.get_paths()[0].vertices[:, 1])
        np.testing.assert_array_equal(edges, [100 - half_width, 100 + half_width])
    assert png_bytes(fig).startswith(PNG_SIGNATURE)


def test_the_fan_chart_shows_only_the_last_days():
    data = fan_data(2, 30)
    fig = plots.fan_chart([("T000", "all 2 tickers")], **data, last_days=5)
    assert fig.get_suptitle().startswith("Last 5 trading days")
    median, actual = fig.axes[0].get_lines()
    np.testing.assert_array_equal(actual.get_xdata(), data["as_of"][:30][-5:])
    np.testing.assert_array_equal(actual.get_ydata(), data["actual"][:30][-6:-1, 0])


def test_a_ticker_of_one_window_has_no_day_to_draw_and_says_so():
    data = fan_data(2, 1)
    fig = plots.fan_chart([("T000", "all 2 tickers")], **data)
    assert fig.axes[0].get_title().endswith("the 80% band n/a, the 95% band n/a")
    assert png_bytes(fig).startswith(PNG_SIGNATURE)


def test_the_fan_chart_of_500_tickers_stays_well_under_a_megabyte():
    data = fan_data(500, 250, horizon=5)
    # a fan that jumps every day and white-noise actuals: the hardest picture to compress
    jumps = np.random.default_rng(2).normal(0, 1, (500 * 250, 1, 1))
    data["quantiles"] = data["quantiles"] + jumps
    rng = np.random.default_rng(3)
    per_ticker = {t: scores(rng.uniform(0.6, 1), rng.normal(0, 0.1), 250) for t in data["tickers"]}
    chosen = plots.fan_tickers(per_ticker)
    size = len(png_bytes(plots.fan_chart(chosen, **data)))
    assert len(chosen) == 4 and size < 500_000, size


def test_the_fan_chart_refuses_more_panels_than_it_keeps_small_and_needs_its_levels():
    data = fan_data(9, 5)
    with pytest.raises(ValueError, match="9 panels; choose 1 to 8 tickers"):
        plots.fan_chart([(t, "") for t in data["tickers"]], **data)
    with pytest.raises(ValueError, match="0 panels; choose 1 to 8 tickers"):
        plots.fan_chart([], **data)
    data["levels"] = (0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.95)
    with pytest.raises(ValueError, match="quantile level 0.025 is not among"):
        plots.fan_chart([("T000", "")], **data)


def test_the_reliability_diagram_draws_each_series_against_the_nominal_levels():
    observed = {
        "model h=1": np.array([0.03, 0.06, 0.12, 0.26, 0.5, 0.73, 0.88, 0.94, 0.97]),
        "rw h=1": np.linspace(0.1, 0.9, 9),
    }
    fig = plots.reliability_diagram(LEVELS, observed)
    (ax,) = fig.axes
    ideal, model, rw = ax.get_lines()
    assert ideal.get_label() == "ideal" and list(ideal.get_ydata()) == [0, 1]
    for line, name in ((model, "model h=1"), (rw, "rw h=1")):
        assert line.get_label() == name
        np.testing.assert_array_equal(line.get_xdata(), LEVELS)
        np.testing.assert_array_equal(line.get_ydata(), observed[name])
    assert ax.get_xlim() == (0, 1) and ax.get_ylim() == (0, 1)
    assert png_bytes(fig).startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError, match=r"rw h=5: \(3,\) shares for 9 levels"):
        plots.reliability_diagram(LEVELS, {"rw h=5": np.ones(3)})
