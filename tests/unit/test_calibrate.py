"""The quantile model and its calibration: non-crossing for any input, the pinball loss, the
conformal step's finite-sample guarantee, and calibrated coverage of a model trained on data
whose noise is known."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from lstm_pipeline.calibrate import MIN_GAP_SCALE, conformal_scales
from lstm_pipeline.config import DEFAULT_QUANTILES
from lstm_pipeline.data import FEATURES
from lstm_pipeline.features import CLOSE, HIGH, LOW, OPEN, VOLUME
from lstm_pipeline.model import RETURN_SCALE, LSTMForecaster, PriceForecaster
from lstm_pipeline.runtime import make_loss, pinball_loss

LEVELS = DEFAULT_QUANTILES
Q = len(LEVELS)
MID = Q // 2
PAIRS = {80: LEVELS.index(0.1), 95: LEVELS.index(0.025)}  # lower level's index per interval


@st.composite
def raw_windows(draw, batch: int = 3, window: int = 8) -> torch.Tensor:
    """Raw bars [B, W, F]: any positive prices (a window may span 1e-2..1e5) and any volume."""
    shape = (batch, window)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    log_low, log_high = sorted(draw(st.lists(st.floats(-4.6, 11.5), min_size=2, max_size=2)))
    close = np.exp(rng.uniform(log_low, log_high, shape))
    open_ = np.exp(rng.uniform(log_low, log_high, shape))
    x = np.empty((*shape, len(FEATURES)))
    x[..., OPEN], x[..., CLOSE] = open_, close
    x[..., HIGH] = np.maximum(open_, close) * np.exp(rng.exponential(0.02, shape))
    x[..., LOW] = np.minimum(open_, close) * np.exp(-rng.exponential(0.02, shape))
    volume_kind = draw(st.sampled_from(["zero", "constant", "wild"]))
    x[..., VOLUME] = {
        "zero": np.zeros(shape),
        "constant": np.full(shape, 1e6),
        "wild": np.floor(np.exp(rng.uniform(0, 27, shape))) * (rng.random(shape) > 0.3),
    }[volume_kind]
    return torch.tensor(x, dtype=torch.float32)


def gap_scales(rng: np.random.Generator, horizon: int, low: float, high: float) -> np.ndarray:
    """Scales [H, Q] as conformal_scales makes them: one per level pair, in [low, high], in any
    order from pair to pair (1 at the median, where it is unused)."""
    pairs = np.exp(rng.uniform(np.log(low), np.log(high), (horizon, MID)))  # innermost first
    scales = np.ones((horizon, Q))
    scales[:, :MID] = pairs[:, ::-1]
    scales[:, MID + 1 :] = pairs
    return scales


def random_quantile_net(seed: int, weight_scale: float, cell: str, derived: bool, horizon: int):
    torch.manual_seed(seed)
    net = LSTMForecaster(
        len(FEATURES),
        horizon,
        hidden_size=16,
        num_layers=2,
        dropout=0.0,
        cell=cell,
        derived_features=derived,
        quantiles=LEVELS,
    )
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(weight_scale)
    return net.eval()


@settings(max_examples=60, deadline=None)
@given(
    x=raw_windows(),
    seed=st.integers(0, 2**16),
    weight_scale=st.sampled_from([0.1, 1.0, 3.0]),
    cell=st.sampled_from(["lstm", "gru"]),
    derived=st.booleans(),
    scale_range=st.sampled_from([(1.0, 1.0), (MIN_GAP_SCALE, 1.5), (0.5, 20.0)]),
)
def test_quantiles_increase_strictly_for_any_input(
    x, seed, weight_scale, cell, derived, scale_range
):
    """Random weights, raw windows and calibration scales: log-return quantiles increase
    strictly along Q, and so do the price quantiles the ONNX wrapper gives."""
    net = random_quantile_net(seed, weight_scale, cell, derived, horizon=3)
    scales = gap_scales(np.random.default_rng(seed), 3, *scale_range)
    net.calibration.copy_(torch.as_tensor(scales))
    with torch.no_grad():
        log_returns = net(x)
        median, prices = PriceForecaster(net)(x)
    assert log_returns.shape == (3, 3, Q) and torch.isfinite(log_returns).all()
    assert (log_returns.diff(dim=-1) > 0).all()
    # prices too, compared rather than subtracted: a wild window's gaps, in units of its own
    # volatility, may overflow exp() at the tails (inf >= inf; the forecast refuses inf)
    assert (prices[..., 1:] >= prices[..., :-1]).all()
    finite = torch.isfinite(prices).all(dim=-1)
    assert (prices[finite].diff(dim=-1) >= 0).all()
    torch.testing.assert_close(median, prices[..., MID])


def test_bf16_autocast_forward_gives_float32_quantiles_that_do_not_cross():
    net = random_quantile_net(0, 1.0, "lstm", True, horizon=4)
    net.calibration.copy_(torch.as_tensor(gap_scales(np.random.default_rng(0), 4, 0.5, 3)))
    x = _windows(64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        median, prices = PriceForecaster(net)(x)
    assert out.dtype == torch.float32 and out.shape == (64, 4, Q)
    assert (out.diff(dim=-1) > 0).all() and (prices.diff(dim=-1) > 0).all()
    with torch.no_grad():
        full = net(x)
    # bf16 keeps ~3 significant digits of the head: the quantiles stay near fp32's
    assert (out - full).abs().max() < 0.05 * full.abs().max()


def _windows(batch: int, window: int = 20, seed: int = 0) -> torch.Tensor:
    """Plausible raw bars: a random walk of closes around 100."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (batch, window)), axis=1))
    x = np.stack([close, close * 1.01, close * 0.99, close, np.full_like(close, 1e6)], -1)
    return torch.tensor(x, dtype=torch.float32)


# ---- the pinball loss ------------------------------------------------------------------------


def test_pinball_loss_by_hand():
    levels = torch.tensor([0.1, 0.5, 0.9])
    # returns 0.01 units = 1 percent unit: target 0.02, quantiles 0.01, 0.02, 0.05
    pred = torch.tensor([[[0.01, 0.02, 0.05]]])
    target = torch.tensor([[0.02]])
    # errors (percent): +1, 0, -3 -> 0.1 * 1, 0, (0.9 - 1) * -3 = 0.1, 0, 0.3; mean 0.4 / 3
    assert pinball_loss(pred, target, levels).item() == pytest.approx(0.4 / 3, rel=1e-6)
    # two windows, two horizons: the mean over every window, horizon and level
    pred = torch.zeros(2, 2, 3)
    target = torch.tensor([[0.01, -0.01], [0.02, 0.0]])
    by_hand = np.mean([max(t * e, (t - 1) * e) for e in (1, -1, 2, 0) for t in (0.1, 0.5, 0.9)])
    assert pinball_loss(pred, target, levels).item() == pytest.approx(by_hand, rel=1e-6)
    loss = make_loss("mse", (0.1, 0.5, 0.9))  # a quantile model ignores the point loss
    assert loss(pred, target).item() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("level", [0.025, 0.1, 0.5, 0.9, 0.975])
def test_the_pinball_loss_of_a_constant_is_least_at_the_empirical_quantile(level):
    """Over constants c, the mean pinball loss of a sample is a convex, piecewise linear
    function with its least value at the empirical quantile: the ceil(n x level)-th smallest
    (unique when n x level is not whole, as for n = 203 at these levels)."""
    sample = torch.tensor(np.random.default_rng(1).standard_t(3, 203) * 0.01, dtype=torch.float64)
    levels = torch.tensor([level], dtype=torch.float64)

    def loss(c: float) -> float:
        constant = torch.full((len(sample), 1, 1), c, dtype=torch.float64)
        return pinball_loss(constant, sample[:, None], levels).item()

    ordered = np.sort(sample.numpy())
    empirical = ordered[int(np.ceil(level * len(sample))) - 1]
    at_sample_points = [loss(c) for c in ordered]  # a kink at each: the least is at one
    assert ordered[int(np.argmin(at_sample_points))] == empirical
    grid = np.linspace(ordered[0] - 0.01, ordered[-1] + 0.01, 4001)
    assert loss(empirical) < min(loss(c) for c in grid if abs(c - empirical) > 1e-9)


# ---- the conformal step ----------------------------------------------------------------------


def exchangeable_pairs(rng: np.random.Generator, n: int, reps: int, width: float):
    """`reps` independent data sets of n i.i.d. (raw quantiles, actual) pairs, laid along the
    horizon axis ([n, reps, Q], [n, reps]): heteroscedastic actuals y ~ N(m, sigma^2), with
    the model's quantiles m + width x sigma x z_tau (width 1 = right, < 1 too narrow)."""
    sigma = np.exp(rng.normal(np.log(0.01), 0.5, (n, reps)))
    median = rng.normal(0, 0.002, (n, reps))
    actual = median + sigma * rng.standard_normal((n, reps))
    z = norm.ppf(LEVELS)
    quantiles = median[..., None] + width * sigma[..., None] * z
    return quantiles, actual


def calibrated(scales: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Quantiles [N, H, Q] as the model calibrated with `scales` gives them: the raw head
    outputs that make the model predict `quantiles` go through its own calibrated head."""
    net = LSTMForecaster(len(FEATURES), scales.shape[0], hidden_size=1, quantiles=LEVELS)
    net = net.double()
    net.calibration.copy_(torch.as_tensor(scales))
    gaps = np.diff(quantiles, axis=-1) / RETURN_SCALE  # [N, H, Q - 1], > 0
    inverse_softplus = gaps + np.log(-np.expm1(-gaps))
    median = quantiles[..., MID : MID + 1] / RETURN_SCALE
    raw = np.concatenate([inverse_softplus[..., :MID], median, inverse_softplus[..., MID:]], -1)
    with torch.no_grad():
        unit = torch.ones(1, 1, 1, dtype=torch.float64)  # gaps in units of a volatility of 1
        return net._quantiles(torch.as_tensor(raw), unit).numpy()


def covered(scales, quantiles, actual, lower: int) -> np.ndarray:
    """[reps] share of windows inside the calibrated interval of levels lower .. Q-1-lower."""
    q = calibrated(scales, quantiles)
    return ((q[..., lower] <= actual) & (actual <= q[..., Q - 1 - lower])).mean(axis=0)


@pytest.mark.parametrize("width", [0.5, 2.5], ids=["too-narrow", "too-wide"])
@pytest.mark.parametrize("n,reps", [(50, 2000), (2000, 200)])
def test_conformal_coverage_holds_in_finite_samples_on_exchangeable_data(n, reps, width):
    """1 - alpha <= E[coverage] <= 1 - alpha + 1/(n + 1) for continuous scores: averaged over
    seeded repetitions, each calibrated on n points and scored on fresh ones."""
    rng = np.random.default_rng(n)
    calib_q, calib_y = exchangeable_pairs(rng, n, reps, width)
    scales = conformal_scales(calib_q, calib_y, LEVELS)
    fresh_q, fresh_y = exchangeable_pairs(rng, 500, reps, width)
    for nominal, lower in PAIRS.items():
        coverage = covered(scales, fresh_q, fresh_y, lower)
        mean, stderr = coverage.mean(), coverage.std(ddof=1) / np.sqrt(reps)
        share = nominal / 100
        assert share - 4 * stderr <= mean <= share + 1 / (n + 1) + 4 * stderr, (
            nominal,
            mean,
            stderr,
        )
        # without calibration the mis-scaled intervals miss badly
        raw = covered(np.ones_like(scales), fresh_q, fresh_y, lower).mean()
        assert abs(raw - share) > 0.04


@given(seed=st.integers(0, 2**16), n=st.integers(1, 300), horizon=st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_conformal_scales_keep_calibrated_quantiles_increasing(seed, n, horizon):
    """Any data, any number of windows: one finite scale per pair, at least MIN_GAP_SCALE, 1 at
    the median; the calibrated quantiles increase strictly."""
    rng = np.random.default_rng(seed)
    raw = np.sort(rng.normal(0, 0.01, (n, horizon, Q)) * rng.uniform(0.1, 3), axis=-1)
    actual = rng.standard_t(2, (n, horizon)) * 0.01 * rng.uniform(0.01, 10)
    scales = conformal_scales(raw, actual, LEVELS)
    assert scales.shape == (horizon, Q)
    assert np.all(scales[:, MID] == 1)
    np.testing.assert_array_equal(scales[:, :MID], scales[:, MID + 1 :][:, ::-1])
    assert np.all(np.isfinite(scales)) and np.all(scales >= MIN_GAP_SCALE)
    assert np.all(np.diff(calibrated(scales, raw), axis=-1) > 0)


def test_too_few_windows_for_a_rank_warn_and_use_the_largest_score(caplog):
    """95% needs ceil(0.95 (n + 1)) <= n, so n >= 19; with 10 windows the rank is out of
    reach: the scale is the largest score, so the calibrated 95% interval just holds every
    calibration window, and the log says how many windows it needed. 80% (the 9th of 10
    scores) is within reach: no warning for it."""
    levels = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
    rng = np.random.default_rng(3)
    actual = rng.normal(0, 0.01, (10, 1))
    raw = np.broadcast_to(norm.ppf(levels) * 0.004, (10, 1, len(levels)))  # far too narrow
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline.calibrate"):
        scales = conformal_scales(raw, actual, levels)
    median = raw[..., 3:4]
    up = np.cumsum(scales[:, 4:] * np.diff(raw[..., 3:], axis=-1), axis=-1)[..., -1]
    down = np.cumsum((scales[:, :3] * np.diff(raw[..., :4], axis=-1))[..., ::-1], -1)[..., -1]
    lo, hi = median[..., 0] - down, median[..., 0] + up  # the calibrated 95% bounds
    assert np.all((lo - 1e-15 <= actual) & (actual <= hi + 1e-15))
    assert min(np.abs(actual - lo).min(), np.abs(actual - hi).min()) < 1e-15  # one on the edge
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert messages == [
        "10 calibration windows are too few for a 95.0% guarantee (needs 19); the model's own "
        "interval is kept or widened"
    ]


def test_too_few_windows_never_narrow_an_interval_below_the_models_own():
    """Two calibration windows on the median: the 50% pair may shrink to the floor, but the
    80% and 95% pairs, whose ranks are out of reach, keep at least the model's own gaps."""
    levels = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
    raw = np.broadcast_to(norm.ppf(levels) * 0.01, (2, 3, len(levels)))
    scales = conformal_scales(raw, np.zeros((2, 3)), levels)
    assert np.all(scales[:, [0, 1, 5, 6]] >= 1)
    assert np.all(scales[:, [2, 4]] == MIN_GAP_SCALE)  # 50%: ranks 2 of 2 are within reach


# ---- a trained model on data whose noise is known -------------------------------------------

QUIET, TURBULENT = 0.006, 0.024  # daily log-return volatility of the two regimes


def regime_switching_prices(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Bars whose log returns are N(0, sigma_t^2), sigma_t switching between QUIET and
    TURBULENT in spells of 40-120 days (long enough for a 20-day window to see the regime);
    returns the bars and each day's sigma."""
    rng = np.random.default_rng(seed)
    spells = rng.integers(40, 121, rows // 40 + 1)
    sigma = np.concatenate([np.full(n, (QUIET, TURBULENT)[i % 2]) for i, n in enumerate(spells)])[
        :rows
    ]
    close = 50 * (seed + 1) * np.exp(np.cumsum(rng.normal(0, 1, rows) * sigma))
    open_ = np.concatenate([[close[0]], close[:-1]])
    frame = pd.DataFrame(
        {
            "Open": open_,
            "High": np.maximum(open_, close) * (1 + sigma / 4),
            "Low": np.minimum(open_, close) * (1 - sigma / 4),
            "Close": close,
            "Volume": rng.integers(10**5, 10**6, rows).astype(float),
        },
        index=pd.bdate_range("2015-01-01", periods=rows),
    )
    return frame, sigma


def test_a_model_trained_on_known_heteroscedastic_noise_is_calibrated_and_follows_volatility():
    """Trained and calibrated through pipeline.train_model, the test split's intervals cover
    near their nominal shares, and they are wider when the window's regime is turbulent."""
    from lstm_pipeline import pipeline
    from lstm_pipeline.config import build_config
    from lstm_pipeline.features import build_window_sets
    from lstm_pipeline.train import predict_prices

    made = {f"T{i}": regime_switching_prices(1500, i) for i in range(4)}
    cfg = build_config(
        features__window=20,
        features__horizon=2,
        model__hidden_size=16,
        model__num_layers=1,
        model__derived_features=True,
        train__max_epochs=6,
        train__batch_size=64,
        train__lr=0.01,
        train__device="cpu",
    )
    windows = build_window_sets({t: f for t, (f, _) in made.items()}, cfg.features)
    result = pipeline.train_model(windows, cfg)
    assert result.calibration is not None and result.calibration.windows == len(windows["calib"])
    predictions = predict_prices(result.model, windows["test"])
    quantiles, actual = predictions.quantiles, predictions.actual
    assert quantiles is not None
    cov = {}
    for nominal, band in ((80, 0.05), (95, 0.03)):
        lower = PAIRS[nominal]
        inside = (quantiles[..., lower] <= actual) & (actual <= quantiles[..., Q - 1 - lower])
        cov[nominal] = inside.mean(0).round(3).tolist()
        for h in range(2):
            assert abs(inside[:, h].mean() - nominal / 100) < band, (nominal, h, inside.mean(0))
    # the regime of each test window's last day, from the known sigma
    test = windows["test"]
    sigma = {t: pd.Series(s, index=made[t][0].index) for t, (_, s) in made.items()}
    regime = np.array(
        [sigma[test.tickers[i]][day] for i, day in zip(test.ticker_ids, test.as_of, strict=True)]
    )
    lower = PAIRS[80]
    width = (quantiles[..., Q - 1 - lower] - quantiles[..., lower]) / predictions.last_close[
        :, None
    ]
    ratio = width[regime == TURBULENT].mean() / width[regime == QUIET].mean()
    assert ratio > 2, (ratio, cov)  # the true ratio is 4; seen: 3.28, coverage 0.81 / 0.95
