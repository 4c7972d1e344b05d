import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.significance import coverage_by_tercile, kupiec_pof, panel_diebold_mariano

DAY0 = np.datetime64("2020-01-01")


def panel(rng, tickers=5, days=250, horizon=1, model_edge=1.0):
    """Absolute h-step errors in prices of a model and a base forecast, [tickers x days] windows.

    Daily shocks share a market part, so same-day losses move together across tickers; an
    h-step error sums h shocks, so consecutive errors overlap. `model_edge` < 1 shrinks the
    model's errors. Prices differ by ticker, as they do in the bundled sample.
    """

    def errors():
        common = rng.standard_t(5, days + horizon)[None, :]
        own = rng.standard_t(5, (tickers, days + horizon))
        daily = 0.7 * common + 0.5 * own
        return sum(daily[:, i : i + days] for i in range(horizon))  # [K, T]

    price = rng.uniform(20, 700, (tickers, 1))
    model, base = np.abs(errors()) * price * model_edge, np.abs(errors()) * price
    dates = np.tile(DAY0 + np.arange(days), tickers)
    return model.ravel(), base.ravel(), np.repeat(np.arange(tickers), days), dates


def concatenated_dm(model, base, horizon):
    """The test as pooled_scores used to run it: every window one after the other as a single
    series, in dollars, as if each were its own date."""
    n = model.size
    return panel_diebold_mariano(model, base, np.zeros(n, int), DAY0 + np.arange(n), horizon)


def duplicated(model, base, ids, dates):
    """The panel with a second, identical copy of every ticker."""
    return (
        np.concatenate([model, model]),
        np.concatenate([base, base]),
        np.concatenate([ids, ids + ids.max() + 1]),
        np.concatenate([dates, dates]),
    )


def test_duplicating_every_ticker_leaves_the_panel_test_alone_but_fools_the_concatenated_one():
    model, base, ids, dates = panel(np.random.default_rng(3), model_edge=0.97)
    stat, p = panel_diebold_mariano(model, base, ids, dates, 1)
    assert panel_diebold_mariano(*duplicated(model, base, ids, dates), 1) == pytest.approx(
        (stat, p)
    )
    old_stat, old_p = concatenated_dm(model, base, 1)
    twice_model, twice_base, _, _ = duplicated(model, base, ids, dates)
    twice_stat, twice_p = concatenated_dm(twice_model, twice_base, 1)
    # same information, twice the "independent" windows: the statistic grows by about sqrt(2)
    assert twice_stat == pytest.approx(old_stat * math.sqrt(2), rel=0.1) and twice_p < old_p / 2


def test_scaling_one_tickers_prices_leaves_the_statistic_unchanged():
    model, base, ids, dates = panel(np.random.default_rng(4), model_edge=0.98)
    factor = np.where(ids == 2, 100.0, 1.0)
    assert panel_diebold_mariano(model * factor, base * factor, ids, dates, 2) == pytest.approx(
        panel_diebold_mariano(model, base, ids, dates, 2)
    )
    # in dollars, one series, the $100x ticker decides alone
    assert concatenated_dm(model * factor, base * factor, 2) != pytest.approx(
        concatenated_dm(model, base, 2), rel=0.05
    )


def test_under_the_null_the_panel_test_rejects_about_five_percent_and_the_old_one_far_more():
    rng = np.random.default_rng(0)
    panel_rejects = old_rejects = 0
    for _ in range(200):
        model, base, ids, dates = panel(rng, horizon=2)
        panel_rejects += panel_diebold_mariano(model, base, ids, dates, 2)[1] < 0.05
        old_rejects += concatenated_dm(model, base, 2)[1] < 0.05
    assert 0.01 <= panel_rejects / 200 <= 0.10
    assert old_rejects / 200 > 0.15  # same-day losses counted as independent


def test_a_clearly_better_model_is_detected_with_a_negative_statistic():
    model, base, ids, dates = panel(np.random.default_rng(5), model_edge=0.8)
    stat, p = panel_diebold_mariano(model, base, ids, dates, 1)
    assert stat < -4 and p < 1e-4
    flipped_stat, flipped_p = panel_diebold_mariano(base, model, ids, dates, 1)
    assert flipped_stat == pytest.approx(-stat, rel=0.05) and flipped_p < 1e-4


def test_degenerate_panels_carry_no_evidence():
    model, base, ids, dates = panel(np.random.default_rng(6), days=30)
    assert panel_diebold_mariano(base, base, ids, dates, 1) == (0.0, 1.0)  # no variance
    one_day = np.full(ids.size, DAY0)
    assert panel_diebold_mariano(model, base, ids, one_day, 1) == (0.0, 1.0)  # T < 2
    empty = np.array([])
    assert panel_diebold_mariano(empty, empty, empty.astype(int), one_day[:0], 3) == (0.0, 1.0)


def test_a_ticker_whose_base_loss_is_all_zero_is_left_out_not_infinite():
    model, base, ids, dates = panel(np.random.default_rng(7), tickers=3, days=60)
    flat = ids == 0
    with_flat = panel_diebold_mariano(model, np.where(flat, 0.0, base), ids, dates, 1)
    assert with_flat == pytest.approx(
        panel_diebold_mariano(model[~flat], base[~flat], ids[~flat], dates[~flat], 1)
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    tickers=st.integers(1, 4),
    days=st.integers(3, 40),
    horizon=st.integers(1, 6),
    scales=st.lists(st.floats(1e-3, 1e4), min_size=4, max_size=4),
)
def test_the_statistic_ignores_price_levels_window_order_and_duplicated_tickers(
    seed, tickers, days, horizon, scales
):
    rng = np.random.default_rng(seed)
    model, base, ids, dates = panel(rng, tickers, days, horizon=1)
    keep = rng.random(ids.size) < 0.8  # an unbalanced panel: some ticker-days missing
    model, base, ids, dates = model[keep], base[keep], ids[keep], dates[keep]
    expected = panel_diebold_mariano(model, base, ids, dates, horizon)
    assert 0 <= expected[1] <= 1 and math.isfinite(expected[0])
    factor = np.asarray(scales)[ids]
    order = rng.permutation(ids.size)
    rescaled = (model * factor)[order], (base * factor)[order], ids[order], dates[order]
    assert panel_diebold_mariano(*rescaled, horizon) == pytest.approx(expected, abs=1e-9)
    assert panel_diebold_mariano(*duplicated(model, base, ids, dates), horizon) == pytest.approx(
        expected, abs=1e-9
    )


def test_kupiec_matches_the_hand_computed_ratio():
    # 5 misses in 250 at 1%: LR = -2 [245 ln .99 + 5 ln .01] + 2 [245 ln .98 + 5 ln .02]
    #                            = 50.97636 - 49.01955 = 1.95681, chi2(1) tail 0.16185
    lr, p = kupiec_pof(5, 250, 0.01)
    assert lr == pytest.approx(1.95681, abs=1e-5) and p == pytest.approx(0.16185, abs=1e-5)


def test_kupiec_handles_no_misses_all_misses_and_the_expected_count():
    lr, p = kupiec_pof(0, 100, 0.05)  # LR = -2 * 100 ln .95
    assert lr == pytest.approx(10.25866, abs=1e-5) and p == pytest.approx(0.001360, abs=1e-6)
    lr, p = kupiec_pof(3, 3, 0.5)  # LR = -2 * 3 ln .5
    assert lr == pytest.approx(4.15888, abs=1e-5) and p == pytest.approx(0.041417, abs=1e-6)
    assert kupiec_pof(5, 100, 0.05) == pytest.approx((0.0, 1.0))
    assert kupiec_pof(0, 0, 0.05) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0 < rate < 1"):
        kupiec_pof(1, 10, 1.0)


def test_coverage_by_tercile_ranks_windows_by_volatility():
    volatility = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.4, 0.3, 0.7, 0.6])
    inside = np.array([False, True, True, True, False, True, False, True, True])
    rows = coverage_by_tercile(inside, volatility)
    assert [r["tercile"] for r in rows] == ["low", "mid", "high"]
    assert [(r["volatility_min"], r["volatility_max"]) for r in rows] == [
        (0.1, 0.3),
        (0.4, 0.6),
        (0.7, 0.9),
    ]
    assert [r["windows"] for r in rows] == [3, 3, 3]
    assert [r["coverage"] for r in rows] == pytest.approx([2 / 3, 1.0, 1 / 3])


def test_tied_volatility_still_fills_every_tercile():
    rows = coverage_by_tercile(np.array([True, False, True, True]), np.ones(4))
    assert [r["windows"] for r in rows] == [2, 1, 1]
    assert [r["coverage"] for r in rows] == pytest.approx([0.5, 1.0, 1.0])
    empty = coverage_by_tercile(np.array([True]), np.array([0.2]))
    assert [r["windows"] for r in empty] == [1, 0, 0] and math.isnan(empty[2]["coverage"])
