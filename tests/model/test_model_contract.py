"""What a model file must promise before it meets the data, and what a session may be given:
real exported ONNX files with altered metadata, real onnxruntime sessions."""

import itertools
import json

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import InputError
from lstm_pipeline.predict import OnnxForecaster
from tests.conftest import alter_metadata

DATA_FEATURES = ",".join(FEATURES)  # what every source provides, in this order


def refusal(path, changes, tmp_path) -> str:
    """The one-line InputError OnnxForecaster gives for `path` with metadata `changes`."""
    altered = alter_metadata(path, tmp_path / "altered.onnx", changes)
    with pytest.raises(InputError) as caught:
        OnnxForecaster(altered)
    message = str(caught.value)
    assert "\n" not in message and f"model file {altered}" in message
    return message


@pytest.mark.parametrize(
    "features",
    [
        json.dumps(list(reversed(FEATURES))),
        json.dumps(["Close", "High", "Low", "Open", "Volume"]),  # Open and Close swapped
        "High,Open,Low,Close,Volume",  # the comma-joined form of older exports, reordered
    ],
    ids=["reversed", "open-close-swapped", "comma-joined-reordered"],
)
def test_the_same_features_in_another_order_are_refused(tiny_onnx, tmp_path, features):
    message = refusal(tiny_onnx[0], {"features": features}, tmp_path)
    assert f"but the data provides {DATA_FEATURES} (the same names in another order)" in message


@pytest.mark.parametrize(
    "features",
    [
        json.dumps(["Open", "High", "Low", "Adj Close", "Volume"]),
        json.dumps(["open", "high", "low", "close", "volume"]),
        json.dumps(list(FEATURES[:4])),
        json.dumps([*FEATURES, "Adj Close"]),
        "Open,High,Low,Close",
    ],
    ids=["adj-close", "lower-case", "fewer", "more", "comma-joined-fewer"],
)
def test_a_model_taking_other_features_is_refused(tiny_onnx, tmp_path, features):
    message = refusal(tiny_onnx[0], {"features": features}, tmp_path)
    assert f"takes features '{','.join(json_or_comma(features))}'" in message  # type: ignore
    assert message.endswith(f"but the data provides {DATA_FEATURES}")


def json_or_comma(text: str) -> object:
    """The names `text` lists: JSON, else the comma-joined form."""
    try:
        return json.loads(text)
    except ValueError:
        return text.split(",")


@pytest.mark.parametrize(
    "features",
    [
        "",
        "[]",
        '["Open", "High"',  # cut JSON
        "{bad",
        '{"Open": 0}',
        '"Open"',
        "5",
        "null",
        json.dumps([*FEATURES[:4], "Close"]),  # a duplicate
        "Open,High,Low,Close,Close",
        json.dumps([1, 2, 3, 4, 5]),
        json.dumps([*FEATURES[:4], None]),
        json.dumps([*FEATURES[:4], ""]),
        json.dumps([*FEATURES[:4], "Vol\nume"]),
        "Open,,High,Low,Close",
    ],
)
def test_malformed_feature_metadata_is_refused(tiny_onnx, tmp_path, features):
    message = refusal(tiny_onnx[0], {"features": features}, tmp_path)
    assert "metadata features" in message and "is not a JSON list of distinct names" in message


@pytest.mark.parametrize("key", ["window", "horizon", "hidden_size"])
@pytest.mark.parametrize("value", ["0", "-3", "1.5", "abc", "", " 10", "10 ", "1e3", "+3", "0x0A"])
def test_window_horizon_and_hidden_size_metadata_must_be_positive_integers(
    tiny_onnx, tmp_path, key, value
):
    message = refusal(tiny_onnx[0], {key: value}, tmp_path)
    assert f"metadata {key} {value!r} is not a positive integer" in message


@pytest.mark.parametrize("key", ["features", "window", "horizon"])
def test_missing_contract_metadata_is_refused(tiny_onnx, tmp_path, key):
    message = refusal(tiny_onnx[0], {key: None}, tmp_path)
    assert f"lacks lstm-pipeline metadata (features, window, horizon): no {key}" in message


def test_huge_window_metadata_is_refused_not_parsed(tiny_onnx, tmp_path):
    message = refusal(tiny_onnx[0], {"window": "9" * 5000}, tmp_path)
    assert "is not a positive integer" in message and len(message) < 400


def test_the_json_and_the_older_comma_joined_features_both_open(tiny_onnx, tmp_path):
    path = tiny_onnx[0]
    exported = {p.key: p.value for p in onnx.load_model(str(path)).metadata_props}
    assert json.loads(exported["features"]) == list(FEATURES)
    older = alter_metadata(path, tmp_path / "older.onnx", {"features": DATA_FEATURES})
    assert OnnxForecaster(path).features == OnnxForecaster(older).features == FEATURES


def test_a_registry_uri_names_the_model_in_its_refusal(tiny_onnx, tmp_path):
    altered = alter_metadata(tiny_onnx[0], tmp_path / "a.onnx", {"features": '["Close"]'})
    with pytest.raises(InputError, match=r"^model models:/m@champion takes features 'Close'"):
        OnnxForecaster(altered, name="model models:/m@champion")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> onnx.ModelProto:
    from tests.conftest import export_tiny_model

    path = tmp_path_factory.mktemp("contract") / "tiny.onnx"
    export_tiny_model(path)
    return onnx.load_model(str(path))


def with_props(model: onnx.ModelProto, changes: dict[str, str]) -> bytes:
    props = {p.key: p.value for p in model.metadata_props} | changes
    altered = onnx.ModelProto()
    altered.CopyFrom(model)
    onnx.helper.set_model_props(altered, props)
    return altered.SerializeToString()


NAMES = st.sampled_from([*FEATURES, "Adj Close", "open", "Volume ", "Close,Open", ""])
FEATURE_TEXT = st.one_of(
    st.lists(NAMES, max_size=7).map(json.dumps),
    st.lists(NAMES, max_size=7).map(",".join),
    st.permutations(FEATURES).map(json.dumps),
    st.text(max_size=40),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(features=FEATURE_TEXT)
def test_any_feature_metadata_opens_only_when_it_is_the_datas(tiny_model, features):
    model = with_props(tiny_model, {"features": features})
    if json_or_comma(features) == list(FEATURES):
        assert OnnxForecaster(model).features == FEATURES
        return
    with pytest.raises(InputError) as caught:
        OnnxForecaster(model)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("model bytes")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(["window", "horizon"]),
    value=st.one_of(st.integers(-5, 30).map(str), st.text(max_size=8)),
)
def test_any_window_or_horizon_metadata_opens_only_when_it_is_the_graphs(tiny_model, key, value):
    model = with_props(tiny_model, {key: value})
    if value == {"window": "10", "horizon": "3"}[key]:
        assert getattr(OnnxForecaster(model), key) == int(value)
        return
    with pytest.raises(InputError) as caught:
        OnnxForecaster(model)
    assert "\n" not in str(caught.value)


# --- what a session may be given: never an input onnxruntime would abort on


def test_an_empty_batch_gives_no_forecasts_without_reaching_onnxruntime(tiny_onnx):
    forecaster = OnnxForecaster(tiny_onnx[0])
    for windows in (np.empty((0, 10, 5), np.float32), tiny_onnx[1][:0]):
        got = forecaster.predict(windows)
        assert got.shape == (0, 3) and got.dtype == np.float32
    assert forecaster.predict(tiny_onnx[1]).shape == (2, 3)  # the session still works


@pytest.mark.parametrize(
    "windows,problem",
    [
        (np.ones((10, 5), np.float32), r"shape \(10, 5\) do not match the model's \(10, 5\)"),
        (np.ones((2, 10, 5, 1), np.float32), r"shape \(2, 10, 5, 1\) do not match"),
        (np.ones((2, 9, 5), np.float32), r"shape \(2, 9, 5\) do not match"),
        (np.ones((2, 11, 5), np.float32), r"shape \(2, 11, 5\) do not match"),
        (np.ones((2, 10, 4), np.float32), r"shape \(2, 10, 4\) do not match"),
        (np.ones((0, 10, 6), np.float32), r"shape \(0, 10, 6\) do not match"),
        (np.ones((2, 10, 5), np.float64), "must be float32, not float64"),
        (np.ones((2, 10, 5), np.int64), "must be float32, not int64"),
        (np.ones((0, 10, 5), np.float16), "must be float32, not float16"),
        (np.ones((2, 10, 5), object), "must be float32, not object"),
        (np.array(1.0, np.float32), r"shape \(\) do not match"),
        (np.float32(1.0), "must be a numpy array, not float32"),
        ([[[1.0] * 5] * 10], "must be a numpy array, not list"),
    ],
)
def test_inputs_a_session_cannot_take_are_input_errors(tiny_onnx, windows, problem):
    with pytest.raises(InputError, match=problem):
        OnnxForecaster(tiny_onnx[0]).predict(windows)


SHAPES = st.lists(st.integers(0, 12), min_size=0, max_size=4)
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_])


@settings(max_examples=200, deadline=None)
@given(shape=SHAPES, dtype=DTYPES)
def test_any_array_gives_forecasts_of_its_batch_or_an_input_error(tiny_onnx, shape, dtype):
    forecaster = OnnxForecaster(tiny_onnx[0], threads=1)
    windows = np.ones(shape, dtype)
    if len(shape) == 3 and tuple(shape[1:]) == (10, 5) and dtype is np.float32:
        got = forecaster.predict(windows)
        assert got.shape == (shape[0], 3) and got.dtype == np.float32
        return
    with pytest.raises(InputError):
        forecaster.predict(windows)


def rewired(
    source, target, tail: list[str], constant: float | None = None, output: str = "forecast"
):
    """A copy of the model whose `output` passes through the ONNX ops `tail` (each taking
    the previous output and, for two-input ops, a constant): a graph that is broken inside
    while its metadata and shapes still look right."""
    model = onnx.load_model(str(source))
    graph = model.graph
    for node in graph.node:  # nodes that read `output` (`forecast` from `quantiles`) read f0
        node.input[:] = ["f0" if name == output else name for name in node.input]
        node.output[:] = ["f0" if name == output else name for name in node.output]
    if constant is not None:
        graph.initializer.append(onnx.numpy_helper.from_array(np.float32(constant), "k"))
    # with no ops, `f0` is left for the caller to turn into `forecast`
    names = ["f0", *[f"f{i}" for i in range(1, len(tail))], output] if tail else []
    for op, (src, dst) in zip(tail, itertools.pairwise(names), strict=True):
        inputs = [src, "k"] if op in ("Div", "Mul", "Add") else [src]
        graph.node.append(onnx.helper.make_node(op, inputs, [dst]))
    onnx.save_model(model, str(target))
    return target


@pytest.mark.parametrize(
    "tail,constant,shown",
    [
        (["Neg", "Log"], None, "nan"),  # log of a negative price
        (["Div"], 0.0, "inf"),
        (["Neg"], None, "-"),  # a negative price
    ],
    ids=["nan", "inf", "negative"],
)
def test_a_model_whose_forecasts_are_no_prices_writes_nothing(
    tiny_onnx, tmp_path, tail, constant, shown
):
    from lstm_pipeline.predict import forecast_table
    from tests.conftest import make_prices

    model = OnnxForecaster(rewired(tiny_onnx[0], tmp_path / "broken.onnx", tail, constant))
    prices = {"AAA": make_prices(40).set_index("Date")}
    with pytest.raises(InputError, match=rf"model file .*broken.onnx forecasts {shown}\S* for AAA"):
        forecast_table(model, prices, "1", "run")


def test_a_graph_with_another_required_input_is_refused_when_opened(tiny_onnx, tmp_path):
    model = onnx.load_model(str(tiny_onnx[0]))
    extra = onnx.helper.make_tensor_value_info("x2", onnx.TensorProto.FLOAT, ["batch"])
    model.graph.input.append(extra)
    onnx.save_model(model, str(tmp_path / "two-inputs.onnx"))
    with pytest.raises(InputError, match=r"takes inputs \['window', 'x2'\], but forecasts give"):
        OnnxForecaster(tmp_path / "two-inputs.onnx")


def test_a_graph_that_gives_another_horizon_than_its_metadata_says_is_refused(tiny_onnx, tmp_path):
    """The output's width is symbolic (reshaped to its own runtime shape, which onnxruntime's
    shape inference cannot see through), so only a run shows it: 3 forecasts, metadata says 7."""
    model = onnx.load_model(str(rewired(tiny_onnx[0], tmp_path / "s.onnx", [])))
    graph = model.graph
    graph.node.append(onnx.helper.make_node("Shape", ["f0"], ["f0_shape"]))
    graph.node.append(onnx.helper.make_node("Reshape", ["f0", "f0_shape"], ["forecast"]))
    graph.output[0].type.tensor_type.shape.dim[1].dim_param = "horizon"
    onnx.save_model(model, str(tmp_path / "symbolic.onnx"))
    altered = alter_metadata(tmp_path / "symbolic.onnx", tmp_path / "h7.onnx", {"horizon": "7"})
    forecaster = OnnxForecaster(altered)
    with pytest.raises(InputError, match=r"gives forecast of shape \[2, 3\] for 2 windows, but"):
        forecaster.predict(tiny_onnx[1])


def test_a_graph_that_fails_to_run_is_one_named_input_error(tiny_onnx, tmp_path):
    """An index out of range: onnxruntime's error, and no log line of its own."""
    model = onnx.load_model(str(rewired(tiny_onnx[0], tmp_path / "f0.onnx", [])))
    graph = model.graph
    index = onnx.numpy_helper.from_array(np.array([0, 1, 5], np.int64), "out_of_range")
    graph.initializer.append(index)  # of 3 forecasts: 5 is out of range, seen only at run time
    graph.node.append(onnx.helper.make_node("Gather", ["f0", "out_of_range"], ["forecast"], axis=1))
    onnx.save_model(model, str(tmp_path / "runfail.onnx"))
    forecaster = OnnxForecaster(tmp_path / "runfail.onnx")
    with pytest.raises(InputError, match=r"runfail.onnx fails to run \("):
        forecaster.predict(tiny_onnx[1])
