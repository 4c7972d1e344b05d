"""The gate's windows of any length, against a ticker-by-ticker reference, on random layouts."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.features import WindowSet
from lstm_pipeline.gate import gate_windows, longest_history


def window_set(segments: list[tuple[int, int]], window: int, seed: int) -> WindowSet:
    """Segments of (ticker id, windows) end to end; ids may skip tickers or come back."""
    rng = np.random.default_rng(seed)
    starts, ids, offset = [], [], 0
    for ticker, count in segments:
        starts.append(np.arange(offset, offset + count))
        ids.append(np.full(count, ticker))
        offset += count + window
    n = offset
    values = torch.from_numpy(rng.uniform(1, 2, (n, 5)).astype(np.float32))
    all_starts = np.concatenate(starts)
    return WindowSet(
        values,
        torch.from_numpy(all_starts),
        torch.from_numpy(rng.normal(0, 0.01, (len(all_starts), 2)).astype(np.float32)),
        window,
        tuple(f"T{i}" for i in range(10)),
        np.concatenate(ids).astype(np.int64),
        np.arange(len(all_starts)).astype("M8[D]"),
    )


def reference(val: WindowSet, length: int):
    """gate_windows and longest_history ticker by ticker."""
    extra = max(length, val.window) - val.window
    starts, ids = val.starts.numpy(), val.ticker_ids
    first = {i: starts[ids == i].min() for i in np.unique(ids)}
    keep = starts - extra >= np.array([first[i] for i in ids], dtype=np.int64)
    rows = (starts[keep] - extra)[:, None] + np.arange(val.window + extra)
    spans = [int(starts[ids == i].max() - starts[ids == i].min()) for i in np.unique(ids)]
    return val.values.numpy()[rows], keep, max(spans) + val.window


@settings(max_examples=50, deadline=None)
@given(
    segments=st.lists(st.tuples(st.integers(0, 9), st.integers(1, 12)), min_size=1, max_size=6),
    window=st.integers(2, 5),
    extra=st.integers(0, 15),
    seed=st.integers(0, 1000),
)
def test_gate_windows_equal_a_ticker_by_ticker_reference(segments, window, extra, seed):
    val = window_set(segments, window, seed)
    windows, keep, longest = reference(val, window + extra)
    got = gate_windows(val, window + extra)
    np.testing.assert_array_equal(got.windows, windows)
    assert got.windows.dtype == np.float32 and got.windows.flags["C_CONTIGUOUS"]
    last_close = val.last_close().double().numpy()[keep]
    np.testing.assert_array_equal(got.last_close, last_close)
    expected = last_close[:, None] * np.exp(val.targets.double().numpy()[keep])
    np.testing.assert_array_equal(got.actual, expected)
    assert longest_history(val) == longest
