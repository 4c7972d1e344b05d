"""A model shipped earlier keeps its meaning: the committed tiny model (tests/golden, rebuilt
only by `make golden`) forecasts the committed prices through today's code, torch and ONNX."""

import numpy as np
import onnx
import pytest
import torch

from lstm_pipeline.data import FEATURES
from lstm_pipeline.export import export_onnx
from lstm_pipeline.model import PriceForecaster
from lstm_pipeline.model_metadata import read_features
from lstm_pipeline.predict import CHUNK, OnnxForecaster
from tests.golden.make_golden import GOLDEN, METADATA, SHAPE, WINDOW, load_net

WINDOWS = np.load(GOLDEN / "windows.npy")  # [7, W, F] raw prices, AAPL and SPY
EXPECTED = np.load(GOLDEN / "forecast.npy")  # [7, H] prices torch gave when it was made


def assert_same_forecast(got: np.ndarray, batch: int) -> None:
    """Within DESIGN's parity bound of 1e-5 in log-return space."""
    last_close = WINDOWS[:batch, -1, FEATURES.index("Close")].astype(np.float64)[:, None]
    got_returns = np.log(got.astype(np.float64) / last_close)
    expected_returns = np.log(EXPECTED[:batch].astype(np.float64) / last_close)
    np.testing.assert_allclose(got_returns, expected_returns, rtol=0, atol=1e-5)


def test_the_golden_files_are_what_they_claim():
    assert WINDOWS.shape == (7, WINDOW, len(FEATURES)) and WINDOWS.dtype == np.float32
    assert EXPECTED.shape == (7, SHAPE["horizon"])
    assert len({round(float(c), 2) for c in WINDOWS[:, -1, FEATURES.index("Close")]}) == 7


@pytest.mark.parametrize("batch", [1, 7])
def test_the_shipped_onnx_file_still_forecasts_the_same_prices(batch):
    forecaster = OnnxForecaster(GOLDEN / "tiny.onnx")
    assert forecaster.features == FEATURES  # the input contract the file was made under
    assert (forecaster.window, forecaster.horizon) == (WINDOW, SHAPE["horizon"])
    assert_same_forecast(forecaster.predict(WINDOWS[:batch]), batch)


@pytest.mark.parametrize("batch", [1, 7])
def test_the_same_weights_in_todays_torch_model_forecast_the_same_prices(batch):
    with torch.no_grad():
        got = PriceForecaster(load_net())(torch.from_numpy(WINDOWS[:batch])).numpy()
    assert_same_forecast(got, batch)


def test_todays_export_of_the_same_weights_matches_the_shipped_file(tmp_path):
    path = export_onnx(load_net(), torch.from_numpy(WINDOWS), tmp_path / "again.onnx", METADATA)
    assert_same_forecast(OnnxForecaster(path).predict(WINDOWS), 7)
    props = {p.key: p.value for p in onnx.load_model(str(path)).metadata_props}
    shipped = {p.key: p.value for p in onnx.load_model(str(GOLDEN / "tiny.onnx")).metadata_props}
    # the shipped file lists its features comma-joined, as exports did before the JSON list
    assert read_features(props.pop("features"), "") == read_features(shipped.pop("features"), "")
    # written since, to size a forecast's calls; the shipped file, without it, takes predict.CHUNK
    assert props.pop("hidden_size") == str(load_net().rnn.hidden_size)
    assert OnnxForecaster(GOLDEN / "tiny.onnx").chunk == CHUNK
    assert props == shipped
