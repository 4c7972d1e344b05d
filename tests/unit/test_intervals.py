"""Interval and quantile scores against values worked out on paper, and their properties."""

from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstm_pipeline.baselines import Baselines
from lstm_pipeline.intervals import (
    crps,
    interval,
    interval_scores_by_ticker_horizon,
    observed_levels,
    pinball,
    score_intervals,
    window_crps,
    winkler,
)

LEVELS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
METRICS = ("coverage_80", "coverage_95", "winkler_80", "winkler_95", "pinball", "crps")
METRICS += ("crpss_rw", "crpss_ewma", "mase_drift")


def test_interval_takes_the_central_levels_and_names_a_missing_one():
    quantiles = np.arange(9.0).reshape(1, 1, 9) + 100  # [1, 1, 9]: 100..108 at LEVELS
    assert [float(b[0, 0]) for b in interval(quantiles, LEVELS, 0.8)] == [102.0, 106.0]
    assert [float(b[0, 0]) for b in interval(quantiles, LEVELS, 0.95)] == [100.0, 108.0]
    with pytest.raises(ValueError, match=r"quantile level 0\.025 is not among the levels"):
        interval(quantiles[..., 2:7], LEVELS[2:7], 0.95)


def test_winkler_is_the_width_plus_the_miss_over_alpha_twice():
    lower, upper = np.full((1, 3), 90.0), np.full((1, 3), 110.0)
    actual = np.array([[100.0, 120.0, 85.0]])  # inside, 10 above, 5 below
    # width 20; 2 / 0.2 = 10 per unit outside
    np.testing.assert_allclose(winkler(lower, upper, actual, 0.2), [[20.0, 120.0, 70.0]])
    # 2 / 0.05 = 40 per unit outside
    np.testing.assert_allclose(winkler(lower, upper, actual, 0.05), [[20.0, 420.0, 220.0]])


def test_pinball_and_crps_by_hand():
    levels = (0.1, 0.5, 0.9)
    quantiles = np.array([[[90.0, 100.0, 110.0], [90.0, 100.0, 110.0]]])  # [1, 2, 3]
    actual = np.array([[105.0, 80.0]])
    # 105: 0.1 x 15 = 1.5, 0.5 x 5 = 2.5, (1 - 0.9) x 5 = 0.5 -> mean 1.5
    # 80: 0.9 x 10 = 9, 0.5 x 20 = 10, 0.1 x 30 = 3 -> mean 22 / 3
    np.testing.assert_allclose(pinball(quantiles, levels, actual), [[1.5, 22 / 3]])
    np.testing.assert_allclose(crps(quantiles, levels, actual), [[3.0, 44 / 3]])
    # in basis points of a last close of 50: 3 / 50 x 1e4 = 600
    np.testing.assert_allclose(
        window_crps(quantiles, levels, actual, np.array([50.0])), [[600.0, 44 / 3 * 200]]
    )


def test_observed_levels_share_actuals_at_or_below_each_quantile():
    quantiles = np.array([[[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0]], [[1.0, 2, 3]]])
    actual = np.array([[0.5], [2.0], [2.5], [4.0]])  # [4, 1]
    # <= 1: only 0.5; <= 2: 0.5 and 2.0 (at the quantile counts); <= 3: all but 4.0
    np.testing.assert_allclose(observed_levels(quantiles, actual), [[0.25, 0.5, 0.75]])


def test_true_quantiles_cover_at_nominal_and_beat_shifted_ones():
    """The true distribution's quantiles on a large normal sample: nominal coverage, observed
    levels at the nominal ones, and a lower CRPS than the same quantiles shifted half a sigma."""
    n, sigma = 40_000, 2.0
    normal = NormalDist()
    z = np.array([normal.inv_cdf(t) for t in LEVELS])
    actual = 100 + sigma * np.random.default_rng(0).standard_normal((n, 2))  # [N, 2]
    truth = np.broadcast_to(100 + sigma * z, (n, 2, 9))
    shifted = np.broadcast_to(100 + sigma * (z + 0.5), (n, 2, 9))
    last_close = np.full(n, 100.0)
    # binomial standard error at n = 80,000: 0.0014 for 80%, 0.0008 for 95%
    for coverage in (0.8, 0.95):
        lower, upper = interval(truth, LEVELS, coverage)
        share = ((lower <= actual) & (actual <= upper)).mean()
        assert share == pytest.approx(coverage, abs=0.006)
    np.testing.assert_allclose(observed_levels(truth, actual), [LEVELS, LEVELS], atol=0.008)
    true_crps = window_crps(truth, LEVELS, actual, last_close).mean()
    assert true_crps < 0.9 * window_crps(shifted, LEVELS, actual, last_close).mean()
    # at the true quantile the expected pinball loss is sigma x pdf(z_tau): 2 x its mean over
    # the nine levels is 0.380 sigma (the exact CRPS, sigma / sqrt(pi) = 0.564 sigma, weighs
    # every level alike; these levels crowd the tails); 2 dollars on 100 -> 75.9 bp
    expected = 2 * sigma * np.mean([normal.pdf(v) for v in z]) / 100 * 1e4
    assert true_crps == pytest.approx(expected, rel=0.02)


def _baselines(last_close, rw, ewma, drift, levels=LEVELS) -> Baselines:
    return Baselines(
        levels=levels,
        last_close=last_close,
        rw=rw,
        ewma=ewma,
        drift=drift,
        volatility=np.ones(len(last_close)),
    )


def _pinball(y: float, offsets: np.ndarray) -> float:
    """The mean pinball loss of quantiles 100 + offsets at LEVELS, one level at a time."""
    losses = []
    for tau, q in zip(LEVELS, 100 + offsets, strict=True):
        losses.append(tau * (y - q) if y >= q else (1 - tau) * (q - y))
    return float(np.mean(losses))


def test_score_intervals_by_hand():
    """Two windows, one horizon, levels at 100 +- 2, 5, 10: every score worked out on paper."""
    offsets = np.array([-10.0, -8, -5, -2, 0, 2, 5, 8, 10])  # 95%: -+10, 80%: -+5
    quantiles = (100 + offsets)[None, None, :].repeat(2, axis=0)  # [2, 1, 9]
    actual = np.array([[101.0], [110.0]])  # inside both; outside 80% by 5, on 95%'s edge
    last_close = np.array([100.0, 100.0])
    forecast = quantiles[..., 4]  # the median, 100
    base = _baselines(last_close, 2 * quantiles - 100, quantiles, np.array([[100.5], [108.0]]))
    scores = score_intervals(quantiles, LEVELS, actual, last_close, forecast, base, "val")
    assert scores["val_coverage_80"] == 0.5 and scores["val_coverage_95"] == 1.0
    # 80%: width 10, plus 2 / 0.2 x 5 for the second window -> (10 + 60) / 2 = 35 dollars
    # on a last close of 100: 35 / 100 x 1e4 = 3500 bp
    assert scores["val_winkler_80"] == pytest.approx(3500.0)
    assert scores["val_winkler_95"] == pytest.approx(2000.0)  # width 20, no miss
    assert scores["val_pinball"] == pytest.approx(
        (_pinball(101, offsets) + _pinball(110, offsets)) * 50
    )
    assert scores["val_crps"] == pytest.approx(2 * scores["val_pinball"])
    # model MAE (1 + 10) / 2 = 5.5 over drift MAE (0.5 + 2) / 2 = 1.25
    assert scores["val_mase_drift"] == pytest.approx(4.4)
    assert scores["drift_val_mae"] == pytest.approx(1.25)
    assert scores["ewma_val_crps"] == pytest.approx(scores["val_crps"])  # the same quantiles
    assert scores["val_crpss_ewma"] == pytest.approx(0.0, abs=1e-12)
    rw_crps = window_crps(base.rw, LEVELS, actual, last_close).mean()
    assert scores["rw_val_crps"] == pytest.approx(rw_crps)
    assert scores["val_crpss_rw"] == pytest.approx(1 - scores["val_crps"] / rw_crps)
    # rw doubles the spread: 80% is 90..110 and 95% 80..120, both cover both (110 on the edge)
    assert (scores["rw_val_coverage_80"], scores["rw_val_coverage_95"]) == (1.0, 1.0)
    assert (scores["ewma_val_coverage_80"], scores["ewma_val_coverage_95"]) == (0.5, 1.0)
    expected = {f"val_{m}{k}" for m in METRICS for k in ("", "_h1")}
    expected |= {f"{b}_val_{m}" for b in ("rw", "ewma") for m in ("crps", "coverage_80")}
    expected |= {"rw_val_coverage_95", "ewma_val_coverage_95", "drift_val_mae"}
    assert set(scores) == expected
    assert all(scores[f"val_{m}"] == scores[f"val_{m}_h1"] for m in METRICS)


def test_score_intervals_refuses_baselines_of_other_windows():
    quantiles = np.tile(np.linspace(95, 105, 9), (3, 2, 1))  # [3, 2, 9]
    actual, forecast = np.full((3, 2), 100.0), np.full((3, 2), 100.0)
    last_close = np.array([100.0, 101.0, 102.0])
    shifted = np.array([100.0, 102.0, 101.0])  # two origins swapped
    base = _baselines(shifted, quantiles, quantiles, forecast)
    with pytest.raises(ValueError, match="window 1: last close 101.0 differs"):
        score_intervals(quantiles, LEVELS, actual, last_close, forecast, base)
    base = _baselines(last_close, quantiles[:2], quantiles[:2], forecast[:2])
    with pytest.raises(ValueError, match="cannot score quantiles"):
        score_intervals(quantiles, LEVELS, actual, last_close, forecast, base)


@st.composite
def quantile_sets(draw, n: int, h: int, spread: float) -> np.ndarray:
    """`[N, H, 9]` non-decreasing log offsets; each window's steps sum to at least `spread`."""
    steps = draw(hnp.arrays(float, (n, h, 9), elements=st.floats(0, 0.3)))
    steps[..., 1:] += spread / 8
    return np.cumsum(steps, axis=-1) - draw(st.floats(0, 1.5))


@st.composite
def scored_windows(draw):
    n, h = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    last_close = draw(hnp.arrays(float, n, elements=st.floats(0.01, 1e5)))
    actual = last_close[:, None] * np.exp(
        draw(hnp.arrays(float, (n, h), elements=st.floats(-1, 1)))
    )
    misses = st.one_of(
        st.floats(-1, -1e-3), st.floats(1e-3, 1)
    )  # drift never hits: else MASE is x / 0
    drift = actual * np.exp(draw(hnp.arrays(float, (n, h), elements=misses)))
    prices = [last_close[:, None, None] * np.exp(draw(quantile_sets(n, h, s))) for s in (0, 1e-3)]
    return prices[0], actual, last_close, drift, prices[1]


@settings(max_examples=150, deadline=None)
@given(scored_windows())
def test_scores_are_finite_and_coverage_is_a_share_for_any_non_decreasing_quantiles(case):
    """Any non-decreasing quantiles (ties and zero width included) against baselines with some
    spread and a drift forecast that misses: every score is a finite number."""
    quantiles, actual, last_close, drift, spread_out = case
    base = _baselines(last_close, spread_out, spread_out, drift)
    scores = score_intervals(quantiles, LEVELS, actual, last_close, quantiles[..., 4], base)
    assert all(np.isfinite(v) for v in scores.values()), scores
    for key, value in scores.items():
        if "coverage" in key:
            assert 0 <= value <= 1, key
        if any(m in key.split("_") for m in ("winkler", "pinball", "crps", "mase", "mae")):
            assert value >= 0, key
        if "crpss" in key:
            assert value <= 1, key


def test_per_ticker_rows_are_each_tickers_own_means_and_all_pools_every_window():
    rng = np.random.default_rng(3)
    n, horizon = 60, 2
    last_close = rng.uniform(20, 700, n)
    centre = last_close[:, None, None] * np.exp(rng.normal(0, 0.01, (n, horizon, 1)))
    quantiles = centre * np.exp(np.array([-0.04, -0.03, -0.02, -0.01, 0, 0.01, 0.02, 0.03, 0.04]))
    actual = last_close[:, None] * np.exp(rng.normal(0, 0.02, (n, horizon)))
    base = _baselines(last_close, quantiles * 1.01, quantiles * 0.99, actual * 1.001)
    ids = rng.integers(0, 3, n)
    rows = interval_scores_by_ticker_horizon(
        quantiles, LEVELS, actual, last_close, base, ids, ("AAA", "BBB", "CCC")
    )
    assert [(r["ticker"], r["horizon"]) for r in rows] == [
        (t, h) for t in ("AAA", "BBB", "CCC", "ALL") for h in (1, 2)
    ]
    for row in rows:
        names = ("AAA", "BBB", "CCC")
        mask = ids == names.index(row["ticker"]) if row["ticker"] in names else ids >= 0
        k = int(row["horizon"]) - 1
        q, a, c = quantiles[mask], actual[mask], last_close[mask]
        pooled = score_intervals(q, LEVELS, a, c, q[..., 4], _subset(base, mask), prefix="x")
        assert row["windows"] == len(a)
        assert row["coverage_80"] == pytest.approx(pooled[f"x_coverage_80_h{k + 1}"])
        assert row["crps"] == pytest.approx(pooled[f"x_crps_h{k + 1}"])
        assert row["crpss_rw"] == pytest.approx(pooled[f"x_crpss_rw_h{k + 1}"])
        assert row["crpss_ewma"] == pytest.approx(pooled[f"x_crpss_ewma_h{k + 1}"])


def _subset(base: Baselines, mask) -> Baselines:
    return Baselines(
        base.levels,
        base.last_close[mask],
        base.rw[mask],
        base.ewma[mask],
        base.drift[mask],
        base.volatility[mask],
    )


def test_pinball_in_blocks_equals_the_whole_split_at_once_exactly():
    """Blocks of PINBALL_BLOCK windows (the last one partial) change no bit of any window's mean."""
    from lstm_pipeline.intervals import PINBALL_BLOCK, _pinball_by_level, pinball

    rng = np.random.default_rng(3)
    levels = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
    n = 2 * PINBALL_BLOCK + 17
    quantiles = np.sort(rng.normal(100, 5, (n, 3, len(levels))), axis=-1)
    actual = rng.normal(100, 5, (n, 3))
    whole = _pinball_by_level(quantiles, levels, actual).mean(axis=-1)
    assert np.array_equal(pinball(quantiles, levels, actual), whole)
