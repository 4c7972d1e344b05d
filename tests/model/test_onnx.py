"""The shipped ONNX graph: raw windows in, prices out, equal to torch, any batch size."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import DataConfig, FeatureConfig
from lstm_pipeline.data import FEATURES, load_prices
from lstm_pipeline.errors import InputError
from lstm_pipeline.export import check_parity, export_onnx
from lstm_pipeline.features import CLOSE, build_window_sets
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.predict import CHUNK, CHUNK_MAX, GATE_FLOATS, OnnxForecaster, chunk_for
from tests.unit.test_calibrate import raw_windows


@pytest.fixture(scope="module")
def real_windows():
    """1000+ real windows from the bundled sample (two tickers)."""
    cfg = DataConfig(source="sample", tickers=("AAPL", "SPY"))
    prices = {t: load_prices(t, cfg) for t in cfg.tickers}
    test = build_window_sets(prices, FeatureConfig(window=30, horizon=3))["test"]
    return test.inputs(torch.arange(len(test)))


@pytest.fixture(
    scope="module", params=[("lstm", False), ("gru", True)], ids=["lstm", "gru+derived"]
)
def exported(real_windows, tmp_path_factory, request):
    cell, derived = request.param
    torch.manual_seed(0)
    net = LSTMForecaster(
        len(FEATURES),
        horizon=3,
        hidden_size=16,
        num_layers=2,
        dropout=0.2,
        cell=cell,
        derived_features=derived,
    )
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(net, real_windows[:1000], path, {"run_id": "abc123", "data_cutoff": "2024-07-30"})
    return net.eval(), path


def test_onnx_matches_torch_for_dynamic_batch(exported, real_windows):
    net, path = exported
    session = OnnxForecaster(path)
    for batch in (1, 7, 1000, len(real_windows)):
        x = real_windows[:batch]
        prices = session.predict(x.numpy())
        assert prices.shape == (batch, 3) and prices.dtype == np.float32
        with torch.no_grad():
            expected = net(x).double().numpy()
        got = np.log(prices.astype(np.float64) / x[:, -1, CLOSE].double().numpy()[:, None])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_batch_cut_into_chunks_equals_one_call(exported, real_windows, threads):
    _, path = exported
    forecaster = OnnxForecaster(path, threads=threads)
    assert forecaster.chunk == chunk_for(real_windows.shape[1], 16) == 256
    forecaster.chunk = CHUNK  # so that these windows make many calls
    x = real_windows[:1000].numpy()  # 31 full chunks and a last one of 8 windows
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (one_call,) = session.run(["forecast"], {"window": x})
    chunked = forecaster.predict(x)
    assert chunked.shape == one_call.shape
    np.testing.assert_allclose(chunked, one_call, rtol=1e-6)


def test_onnx_output_is_prices_near_the_last_close(exported, real_windows):
    _, path = exported
    prices = OnnxForecaster(path).predict(real_windows[:50].numpy())
    last = real_windows[:50, -1, CLOSE].numpy()[:, None]
    assert np.all(np.abs(prices / last - 1) < 0.2)


def test_onnx_file_is_self_contained_with_metadata(exported):
    _, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert not list(path.parent.glob("*.data"))  # no external weights file
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["features"]) == list(FEATURES)
    assert (meta["window"], meta["horizon"]) == ("30", "3")
    assert (meta["run_id"], meta["data_cutoff"]) == ("abc123", "2024-07-30")
    assert [i.name for i in model.graph.input] == ["window"]
    assert [o.name for o in model.graph.output] == ["forecast"]


def test_parity_check_catches_a_model_that_differs(exported, real_windows):
    net, path = exported
    other = LSTMForecaster(
        len(FEATURES),
        horizon=3,
        hidden_size=16,
        num_layers=2,
        cell=net.rnn.mode.lower(),
        derived_features=net.derived_features,
    ).eval()
    from lstm_pipeline.errors import ExportError

    with pytest.raises(ExportError, match="ONNX and torch differ"):
        check_parity(other, path, real_windows[:10])
    assert check_parity(net, path, real_windows[:10]) <= 1e-5


def test_wrong_window_shape_and_non_onnx_file_are_input_errors(exported, tmp_path: Path):
    _, path = exported
    with pytest.raises(InputError, match=r"do not match the model's \(30, 5\)"):
        OnnxForecaster(path).predict(np.ones((2, 20, 5), np.float32))
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        OnnxForecaster(junk)


@pytest.fixture(
    scope="module", params=[("lstm", False), ("gru", True)], ids=["lstm", "gru+derived"]
)
def exported_quantiles(real_windows, tmp_path_factory, request):
    """A quantile model with uneven calibration scales, exported."""
    from tests.unit.test_calibrate import LEVELS, gap_scales

    cell, derived = request.param
    torch.manual_seed(1)
    net = LSTMForecaster(
        len(FEATURES),
        horizon=3,
        hidden_size=16,
        num_layers=2,
        dropout=0.2,
        cell=cell,
        derived_features=derived,
        quantiles=LEVELS,
    )
    net.calibration.copy_(torch.as_tensor(gap_scales(np.random.default_rng(0), 3, 0.3, 4.0)))
    path = tmp_path_factory.mktemp("onnx-q") / "model.onnx"
    export_onnx(net, real_windows[:1000], path, {"run_id": "q1", "data_cutoff": "2024-07-30"})
    return net.eval(), path


def test_quantile_outputs_match_torch_for_dynamic_batch(exported_quantiles, real_windows):
    """Both outputs at 1e-5 in log-return space; the calibration scales are in the graph."""
    net, path = exported_quantiles
    session = OnnxForecaster(path)
    for batch in (1, 7, len(real_windows)):
        x = real_windows[:batch]
        forecast, quantiles = session.predict_quantiles(x.numpy())
        assert quantiles is not None and quantiles.shape == (batch, 3, len(net.quantiles))
        with torch.no_grad():
            expected = net(x).double().numpy()
        last = x[:, -1, CLOSE].double().numpy()[:, None, None]
        got = np.log(quantiles.astype(np.float64) / last)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(forecast, quantiles[..., net.median_index])
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["quantile_levels"]) == list(net.quantiles)
    assert check_parity(net, path, real_windows[:10]) <= 1e-5
    net.calibration.mul_(1.5)  # other scales: the file no longer matches
    try:
        from lstm_pipeline.errors import ExportError

        with pytest.raises(ExportError, match="ONNX and torch differ"):
            check_parity(net, path, real_windows[:10])
    finally:
        net.calibration.div_(1.5)


@settings(max_examples=8, deadline=None)
@given(x=raw_windows(batch=4, window=30))
def test_onnx_quantiles_increase_strictly_for_any_input(exported_quantiles, x):
    _, path = exported_quantiles
    forecast, quantiles = OnnxForecaster(path).predict_quantiles(x.numpy())
    assert quantiles is not None and np.isfinite(quantiles).all()
    assert (np.diff(quantiles, axis=-1) > 0).all()


def test_a_model_trained_under_cpu_bf16_autocast_exports_an_fp32_graph_with_parity(
    monkeypatch, real_windows, tmp_path
):
    """bf16 is a training speed-up only: the weights AdamW keeps are fp32, the shipped graph
    holds no bf16 tensor, and onnxruntime matches torch's fp32 forward at 1e-5."""
    from lstm_pipeline import runtime
    from lstm_pipeline.config import DEFAULT_QUANTILES, TrainConfig
    from lstm_pipeline.train import fit

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # emulated where absent
    cfg = DataConfig(source="sample", tickers=("AAPL", "SPY"))
    prices = {t: load_prices(t, cfg) for t in cfg.tickers}
    windows = build_window_sets(prices, FeatureConfig(window=30, horizon=3))
    torch.manual_seed(0)
    net = LSTMForecaster(len(FEATURES), 3, 16, 2, dropout=0.2, quantiles=DEFAULT_QUANTILES)
    train = TrainConfig(device="cpu", precision="bf16", max_epochs=2, batch_size=128, lr=0.01)
    result = fit(net, windows["train"], windows["val"], train)
    assert result.precision == "bf16"
    path = export_onnx(result.model, real_windows[:500], tmp_path / "m.onnx", {"run_id": "bf"})
    graph = onnx.load(str(path)).graph
    values = [*graph.input, *graph.output, *graph.value_info]
    dtypes = {t.data_type for t in graph.initializer}
    dtypes |= {v.type.tensor_type.elem_type for v in values}
    casts = {a.i for n in graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"}
    half = {onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT16}
    assert onnx.TensorProto.FLOAT in dtypes and not half & (dtypes | casts)
    assert check_parity(result.model, path, real_windows) <= 1e-5


@settings(max_examples=300, deadline=None)
@given(window=st.integers(1, 2_000), hidden=st.one_of(st.none(), st.integers(1, 4_096)))
def test_a_call_holds_what_the_cpu_caches_hold_within_fixed_bounds(window, hidden):
    chunk = chunk_for(window, hidden)
    assert CHUNK <= chunk <= CHUNK_MAX and chunk & (chunk - 1) == 0  # a power of two
    if hidden is None:
        assert chunk == CHUNK  # a model exported before its hidden size was written
        return
    gates = window * 4 * hidden  # floats per window the LSTM keeps during a call
    assert chunk == CHUNK or chunk * gates <= GATE_FLOATS  # within the budget, or the floor
    assert chunk == CHUNK_MAX or 2 * chunk * gates > GATE_FLOATS  # the largest that fits
    assert chunk_for(window + 1, hidden) <= chunk and chunk_for(window, hidden + 1) <= chunk


def test_an_exported_model_records_the_hidden_size_that_sizes_its_calls(exported):
    net, path = exported
    forecaster = OnnxForecaster(path)
    assert forecaster.metadata["hidden_size"] == str(net.rnn.hidden_size) == "16"
    assert forecaster.chunk == chunk_for(forecaster.window, 16) > CHUNK
