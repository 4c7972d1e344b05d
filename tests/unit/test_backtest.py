import numpy as np
import pytest

from lstm_pipeline.backtest import fold_split
from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.errors import DataValidationError
from lstm_pipeline.features import build_window_sets
from tests.unit.test_features import numbered_prices

CFG = FeatureConfig(window=10, horizon=3, val_frac=0.2)


def test_folds_tile_the_end_of_the_series_and_history_expands():
    prices = numbered_prices(300)
    spans = [fold_split(prices, CFG, "AAA", k, 3, 40) for k in range(3)]
    for k, parts in enumerate(spans):
        held_out = parts["test"].iloc[CFG.window :]  # the span whose closes are targets
        assert len(held_out) == 40
        assert held_out.index[0] == prices.index[300 - (3 - k) * 40]
        assert parts["val"].index[-1] < held_out.index[0]  # history ends before the span
        assert parts["train"].index[-1] < parts["val"].index[0]
    assert spans[-1]["test"].index[-1] == prices.index[-1]
    assert [len(p["train"]) + len(p["val"]) for p in spans] == [180, 220, 260]


def test_fold_targets_lie_inside_the_held_out_span():
    prices = numbered_prices(300)

    def splitter(frame, cfg, ticker):
        return fold_split(frame, cfg, ticker, fold=1, folds=3, fold_days=40)

    test = build_window_sets({"AAA": prices}, CFG, splitter)["test"]
    closes = test.inputs(np.arange(len(test)))[..., 3].double()
    targets = closes[:, -1:] * np.exp(test.targets.double())
    span = prices["Close"].iloc[300 - 2 * 40 : 300 - 40]
    assert targets.min() >= span.iloc[0] - 1e-6 and targets.max() <= span.iloc[-1] + 1e-6
    assert len(test) == 40 - CFG.horizon + 1


def test_too_many_folds_for_the_data_is_an_input_error():
    with pytest.raises(
        DataValidationError, match="AAA: 100 rows .*, but 176 are needed for 5 folds of 30 days"
    ):
        fold_split(numbered_prices(100), CFG, "AAA", 0, 5, 30)
