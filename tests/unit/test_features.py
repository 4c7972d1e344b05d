import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import DataValidationError
from lstm_pipeline.features import (
    CLOSE,
    SPLITS,
    build_window_sets,
    denormalise_windows,
    make_windows,
    normalise_windows,
    split_by_time,
)


def numbered_prices(n: int, first_close: float = 100.0) -> pd.DataFrame:
    """Bars whose close is first_close + row number, so every value tells where it came from."""
    close = first_close + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "Open": close,
            "High": close + 0.5,
            "Low": close - 0.5,
            "Close": close,
            "Volume": np.full(n, 1e6),
        },
        index=pd.bdate_range("2021-01-01", periods=n),
    )


def test_make_windows_aligns_inputs_with_future_log_returns():
    series = torch.tensor(numbered_prices(30).to_numpy(np.float32))
    x, y = make_windows(series, window=5, horizon=3)
    assert x.shape == (30 - 5 - 3 + 1, 5, len(FEATURES)) and y.shape == (23, 3)
    for i in (0, 7, 22):
        assert torch.equal(x[i], series[i : i + 5])
        last = series[i + 4, CLOSE].double()
        expected = [float(torch.log(series[i + 4 + h, CLOSE].double() / last)) for h in (1, 2, 3)]
        np.testing.assert_allclose(y[i].numpy(), expected, rtol=1e-6)


def test_make_windows_returns_a_view_not_a_copy():
    series = torch.arange(40, dtype=torch.float32).reshape(8, 5) + 1
    x, _ = make_windows(series, window=3, horizon=1)
    series[2, 0] = -7.0
    assert x[0, 2, 0] == -7.0 and x[2, 0, 0] == -7.0


def test_make_windows_rejects_series_shorter_than_window_plus_horizon():
    with pytest.raises(ValueError, match="too short"):
        make_windows(torch.ones(6, 5), window=5, horizon=2)


@pytest.mark.parametrize("window,horizon", [(5, 1), (10, 3), (20, 5)])
def test_windows_never_cross_split_boundary(window, horizon):
    cfg = FeatureConfig(window=window, horizon=horizon, val_frac=0.2, test_frac=0.2)
    prices = {"AAA": numbered_prices(200), "BBB": numbered_prices(150, first_close=1000.0)}
    sets = build_window_sets(prices, cfg)
    for name, ws in sets.items():
        idx = torch.arange(len(ws))
        inputs = ws.inputs(idx)[..., CLOSE].double()  # [N, W] closes the model sees
        anchor = inputs[:, -1:]
        targets = anchor * torch.exp(ws.targets.double())  # [N, H] closes it must predict
        for tid, ticker in enumerate(ws.tickers):
            rows = split_by_time(prices[ticker], cfg, ticker)[name]["Close"]
            mask = torch.from_numpy(ws.ticker_ids == tid)
            used = torch.cat([inputs[mask], targets[mask]], dim=1)
            assert used.min() >= rows.iloc[0] - 1e-6 and used.max() <= rows.iloc[-1] + 1e-6, name
            # every possible window of the split is there, and only those
            assert int(mask.sum()) == len(rows) - window - horizon + 1


def test_splits_are_chronological_and_cover_every_row():
    prices = numbered_prices(300)
    parts = split_by_time(prices, FeatureConfig(window=10, horizon=2), "AAA")
    assert list(parts) == ["train", "val", "calib", "test"]
    ends = [(p.index[0], p.index[-1]) for p in parts.values()]
    assert all(end < next_start for (_, end), (next_start, _) in zip(ends, ends[1:], strict=False))
    assert sum(len(p) for p in parts.values()) == 300


def test_split_of_a_short_series_says_how_many_rows_are_needed():
    with pytest.raises(
        DataValidationError, match=r"AAA: 50 rows from 2021-01-01 to 2021-03-11, but 264 are needed"
    ):
        split_by_time(numbered_prices(50), FeatureConfig(window=60, horizon=5), "AAA")


@pytest.mark.parametrize("batch,window", [(1, 2), (4, 10), (16, 60)])
def test_normalise_then_denormalise_is_identity(batch, window):
    gen = torch.Generator().manual_seed(batch * window)
    x = torch.rand(batch, window, len(FEATURES), generator=gen, dtype=torch.float64) * 100 + 1
    x[..., -1] = torch.randint(0, 10**7, (batch, window), generator=gen)  # volume, zeros allowed
    z = normalise_windows(x)
    back = denormalise_windows(z, x[:, -1, CLOSE], x[..., -1].mean(dim=1))
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-6)


def test_normalised_windows_are_level_free():
    x = torch.tensor(numbered_prices(20).to_numpy(np.float64))[None]
    z = normalise_windows(x)
    assert z[0, -1, CLOSE] == 0  # the last close is the reference
    torch.testing.assert_close(normalise_windows(x * torch.tensor([7.0] * 4 + [1.0])), z)


def segment_by_segment(segments: dict[str, dict[str, pd.DataFrame]], window: int, horizon: int):
    """Reference pooling of one split: make_windows on each ticker's segment in turn."""
    values, starts, targets, ids, as_of, offset = [], [], [], [], [], 0
    for i, parts in enumerate(segments.values()):
        frame = parts["val"]
        series = torch.tensor(frame.loc[:, list(FEATURES)].to_numpy(np.float32))
        _, y = make_windows(series, window, horizon)
        values.append(series)
        starts.append(torch.arange(offset, offset + len(y)))
        targets.append(y)
        ids.append(np.full(len(y), i))
        as_of.append(frame.index.to_numpy()[window - 1 : window - 1 + len(y)])
        offset += len(series)
    return torch.cat(values), torch.cat(starts), torch.cat(targets), ids, as_of


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(20, 90), min_size=1, max_size=5),
    window=st.integers(2, 6),
    horizon=st.integers(1, 4),
    shuffled_columns=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_pooled_windows_equal_make_windows_segment_by_segment(
    lengths, window, horizon, shuffled_columns, seed
):
    """Any number of tickers and lengths, columns in FEATURES' order or not, extra ones."""
    rng = np.random.default_rng(seed)
    prices = {}
    for i, n in enumerate(lengths):
        frame = numbered_prices(n, first_close=float(rng.uniform(1, 500))) * rng.uniform(0.5, 2)
        if shuffled_columns:
            frame = frame.assign(Extra=1.0)[["Volume", "Extra", "Close", "Low", "High", "Open"]]
        prices[f"T{i}"] = frame
    cfg = FeatureConfig(window=window, horizon=horizon)

    def val_only(frame: pd.DataFrame, cfg: FeatureConfig, ticker: str) -> dict[str, pd.DataFrame]:
        return {name: frame.iloc[3:] if name == "val" else frame for name in SPLITS}

    got = build_window_sets(prices, cfg, val_only)["val"]
    values, starts, targets, ids, as_of = segment_by_segment(
        {t: {"val": p.iloc[3:]} for t, p in prices.items()}, window, horizon
    )
    assert torch.equal(got.values, values) and got.values.is_contiguous()
    assert torch.equal(got.starts, starts) and torch.equal(got.targets, targets)
    np.testing.assert_array_equal(got.ticker_ids, np.concatenate(ids))
    np.testing.assert_array_equal(got.as_of, np.concatenate(as_of))
    assert got.ticker_ids.dtype == np.int64 and got.as_of.dtype == np.concatenate(as_of).dtype


def test_a_segment_too_short_for_one_window_is_refused_by_its_length():
    def short_val(frame: pd.DataFrame, cfg: FeatureConfig, ticker: str) -> dict[str, pd.DataFrame]:
        return {name: frame.iloc[:7] if name == "val" else frame for name in SPLITS}

    prices = {"AAA": numbered_prices(40), "BBB": numbered_prices(40)}
    with pytest.raises(ValueError, match="^series of 7 rows is too short for 5\\+3$"):
        build_window_sets(prices, FeatureConfig(window=5, horizon=3), short_val)
