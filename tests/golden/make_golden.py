"""Regenerate the golden model (`make golden`); review the diff, since it changes what is held.

A tiny seeded LSTM, its weights (npz, no pickle), seven real raw windows from the bundled
sample, the ONNX file exported from it and the prices torch forecast for those windows. The
files pin what a shipped model means: tests/model/test_golden.py holds today's code to them, so
a champion exported by an older version of the pipeline keeps forecasting the same prices.
"""

from pathlib import Path

import numpy as np
import torch

from lstm_pipeline.config import DataConfig, FeatureConfig
from lstm_pipeline.data import FEATURES, load_prices
from lstm_pipeline.export import export_onnx
from lstm_pipeline.features import build_window_sets
from lstm_pipeline.model import LSTMForecaster, PriceForecaster

GOLDEN = Path(__file__).parent
SHAPE = {"horizon": 3, "hidden_size": 8, "num_layers": 1}  # LSTMForecaster's arguments
WINDOW = 10
METADATA = {"run_id": "golden", "data_cutoff": "2024-07-30"}


def tiny_net() -> LSTMForecaster:
    return LSTMForecaster(len(FEATURES), **SHAPE).eval()


def load_net() -> LSTMForecaster:
    """The golden net from its committed weights."""
    net = tiny_net()
    with np.load(GOLDEN / "weights.npz", allow_pickle=False) as weights:
        net.load_state_dict({name: torch.from_numpy(weights[name]) for name in weights.files})
    return net


def main() -> None:
    torch.manual_seed(0)
    net = tiny_net()
    cfg = DataConfig(source="sample", tickers=("AAPL", "SPY"))
    prices = {t: load_prices(t, cfg) for t in cfg.tickers}
    test = build_window_sets(prices, FeatureConfig(window=WINDOW, horizon=SHAPE["horizon"]))
    windows = test["test"].inputs(torch.arange(0, 700, 100))  # [7, W, F], both tickers
    np.savez(GOLDEN / "weights.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
    np.save(GOLDEN / "windows.npy", windows.numpy())
    with torch.no_grad():
        np.save(GOLDEN / "forecast.npy", PriceForecaster(net)(windows).numpy())
    export_onnx(net, windows, GOLDEN / "tiny.onnx", METADATA)
    print(f"wrote {', '.join(sorted(p.name for p in GOLDEN.glob('*.np*')))} and tiny.onnx")


if __name__ == "__main__":
    main()
