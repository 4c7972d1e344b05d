"""Property tests of windowing and normalisation over random lengths, windows and horizons."""

import numpy as np
import pandas as pd
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.features import (
    CLOSE,
    SPLITS,
    build_window_sets,
    denormalise_windows,
    make_windows,
    normalise_windows,
)


@st.composite
def series_window_horizon(draw):
    window = draw(st.integers(2, 30))
    horizon = draw(st.integers(1, 10))
    length = draw(st.integers(window + horizon, window + horizon + 200))
    return length, window, horizon


@settings(max_examples=60, deadline=None)
@given(series_window_horizon())
def test_no_window_sees_its_own_future(case):
    """Every input row precedes every target row of the same window, and targets are exact."""
    length, window, horizon = case
    rows = torch.arange(length, dtype=torch.float64)
    # feature values encode the row; close = e^(row / 100), so targets decode to rows too
    series = torch.stack([rows] * (len(FEATURES) - 1) + [rows], dim=1) + 1
    series[:, CLOSE] = torch.exp(rows / 100)
    x, y = make_windows(series, window, horizon)
    assert x.shape == (length - window - horizon + 1, window, len(FEATURES))
    last_input_row = x[:, -1, 0] - 1  # [N]
    assert torch.equal(last_input_row, torch.arange(x.shape[0], dtype=torch.float64) + window - 1)
    target_rows = last_input_row[:, None] + y * 100  # log(c[t+h] / c[t]) * 100 = h
    expected = last_input_row[:, None] + torch.arange(1, horizon + 1)
    torch.testing.assert_close(target_rows, expected.double(), rtol=0, atol=1e-4)
    assert torch.all(x[..., 0].max(dim=1).values - 1 < target_rows.min(dim=1).values)


@settings(max_examples=30, deadline=None)
@given(series_window_horizon(), st.floats(0.1, 0.3), st.floats(0.1, 0.3))
def test_windows_of_a_split_stay_inside_that_split(case, val_frac, test_frac):
    length, window, horizon = case
    cfg = FeatureConfig(window=window, horizon=horizon, val_frac=val_frac, test_frac=test_frac)
    n = max(length, 3 * (window + horizon) * 4)
    close = 100.0 + np.arange(n)
    prices = pd.DataFrame(
        {"Open": close, "High": close, "Low": close, "Close": close, "Volume": np.ones(n)},
        index=pd.bdate_range("2000-01-03", periods=n),
    )
    sets = build_window_sets({"AAA": prices}, cfg)
    bounds, start = {}, 0
    for name in SPLITS:
        rows = len(sets[name].values)
        bounds[name] = (100.0 + start, 100.0 + start + rows - 1)
        start += rows
    for name, ws in sets.items():
        closes = ws.inputs(torch.arange(len(ws)))[..., CLOSE].double()
        targets = closes[:, -1:] * torch.exp(ws.targets.double())
        low, high = bounds[name]
        assert closes.min() >= low - 1e-6 and targets.max() <= high + 1e-3


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 8),
    st.integers(2, 40),
    st.floats(0.01, 1e5),
    st.integers(0, 2**31),
)
def test_denormalise_inverts_normalise(batch, window, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, window, len(FEATURES), generator=gen, dtype=torch.float64) * scale + 1e-3
    x[..., -1] = torch.randint(0, 10**9, (batch, window), generator=gen).double()
    z = normalise_windows(x)
    back = denormalise_windows(z, x[:, -1, CLOSE], x[..., -1].mean(dim=1))
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-6)
