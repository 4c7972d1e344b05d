"""docs/screenshots.py's scenario data: the prices it appends day by day break regime where told."""

import importlib.util

import numpy as np

from tests.conftest import ROOT


def load_script():
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "docs/screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lag1(returns: np.ndarray) -> float:
    return float(np.corrcoef(returns[:-1], returns[1:])[0, 1])


def test_the_regime_breaks_on_the_row_it_is_told():
    """Before: a cycle (each day's return tells the next, lag-1 autocorrelation ~0.86); from
    row `break_at`: a random walk (~0), its daily returns about as volatile."""
    shots = load_script()
    frame = shots.prices(seed=1, rows=400, break_at=340)
    returns = np.diff(np.log(frame["Close"].to_numpy()))  # returns[i]: row i -> i + 1
    before, after = returns[200:339], returns[339:]
    assert lag1(before) > 0.7 and lag1(after) < 0.3
    assert 0.5 < np.std(after) / np.std(before) < 2
    assert frame["Date"].is_unique and frame["Date"].is_monotonic_increasing
    assert (frame["High"] >= frame[["Open", "Close"]].max(axis=1)).all()
    assert (frame["Low"] <= frame[["Open", "Close"]].min(axis=1)).all()


def test_a_changed_verdict_reads_as_one_phrase():
    shots = load_script()
    change = {"state": "degraded", "metric": "mase", "window": "20", "value": 1.2199}
    assert shots.describe(change) == "degraded mase_20 = 1.22"
