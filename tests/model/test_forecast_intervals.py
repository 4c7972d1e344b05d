"""The forecast file's intervals: bounds from a quantile model's calibrated quantiles, every
quantile in a .parquet file, and an older model without quantiles still forecasting with empty
bounds and one warning. Real exported ONNX files, real onnxruntime sessions."""

import json
import logging

import numpy as np
import onnx
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import DEFAULT_QUANTILES
from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import InputError
from lstm_pipeline.predict import FORECAST_COLUMNS, OnnxForecaster, forecast_table, write_forecasts
from tests.conftest import alter_metadata, export_tiny_model, make_prices
from tests.model.test_model_contract import refusal, rewired

# the contract (DESIGN.md): the bounds of the 80% and 95% intervals and their levels
BOUND_LEVELS = {"lower_95": 0.025, "lower_80": 0.1, "upper_80": 0.9, "upper_95": 0.975}
BOUNDS = list(BOUND_LEVELS)
QUANTILE_COLUMNS = [f"quantile_{level!r}" for level in DEFAULT_QUANTILES]
ORDERED = ["lower_95", "lower_80", "forecast", "upper_80", "upper_95"]


def bars(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    """`rows` synthetic bars of FEATURES, indexed by their dates."""
    frame = make_prices(rows, seed=seed)
    return frame.set_index(pd.to_datetime(frame["Date"]))[list(FEATURES)].astype(float)


def prices_of(*tickers: str, rows: int = 40) -> dict[str, pd.DataFrame]:
    return {ticker: bars(rows, seed) for seed, ticker in enumerate(tickers)}


def assert_ordered(table: pd.DataFrame) -> None:
    """lower_95 <= lower_80 <= forecast <= upper_80 <= upper_95 and the quantiles non-decreasing,
    on every row."""
    for columns in (ORDERED, QUANTILE_COLUMNS):
        steps = np.diff(table[columns].to_numpy(float), axis=1)
        assert (steps >= 0).all(), table[columns]


def test_a_quantile_model_fills_the_bounds_with_its_calibrated_quantiles(tiny_quantile_onnx):
    model = OnnxForecaster(tiny_quantile_onnx[0])
    table = forecast_table(model, prices_of("AAA", "BBB", "CCC"), "4", "run")
    assert list(table.columns) == [*FORECAST_COLUMNS, *QUANTILE_COLUMNS]
    assert len(table) == 3 * 3 and table[BOUNDS].notna().all().all()
    assert_ordered(table)
    for bound, level in BOUND_LEVELS.items():
        assert (table[bound] == table[f"quantile_{level:g}"]).all()
    assert (table["forecast"] == table["quantile_0.5"]).all()  # the median
    _, quantiles = model.predict_quantiles(np.stack([tiny_quantile_onnx[1][0]]))
    assert quantiles is not None and quantiles.shape == (1, 3, len(DEFAULT_QUANTILES))


@pytest.mark.parametrize("source", ["tiny", "golden"])
def test_an_older_model_forecasts_with_empty_bounds_and_one_warning(
    tiny_onnx, source, caplog, tmp_path
):
    path = tiny_onnx[0] if source == "tiny" else "tests/golden/tiny.onnx"
    model = OnnxForecaster(path)
    assert model.quantile_levels == ()
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        table = forecast_table(model, prices_of("AAA", "BBB", "CCC", rows=80), "1", "run")
    assert list(table.columns) == list(FORECAST_COLUMNS)
    assert table[BOUNDS].isna().all().all() and table["forecast"].notna().all()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"model file {path} has no quantiles output: lower_95, lower_80, upper_80 and upper_95 "
        "are empty (retrain to get calibrated intervals)"
    ]
    write_forecasts(table, tmp_path / "old.csv")
    header, first = (tmp_path / "old.csv").read_text().splitlines()[:2]
    assert header == ",".join(FORECAST_COLUMNS)
    assert ",,,," in first  # four empty cells, not "nan"


def test_parquet_carries_every_quantile_and_csv_the_file_columns(tiny_quantile_onnx, tmp_path):
    table = forecast_table(OnnxForecaster(tiny_quantile_onnx[0]), prices_of("AAA"), "4", "run")
    csv = pd.read_csv(write_forecasts(table, tmp_path / "f.csv"))
    parquet = pd.read_parquet(write_forecasts(table, tmp_path / "f.parquet"))
    assert list(csv.columns) == list(FORECAST_COLUMNS)
    assert list(parquet.columns) == [*FORECAST_COLUMNS, *QUANTILE_COLUMNS]
    np.testing.assert_allclose(csv[ORDERED], table[ORDERED], rtol=1e-12)
    np.testing.assert_array_equal(parquet[QUANTILE_COLUMNS], table[QUANTILE_COLUMNS])


@pytest.mark.parametrize(
    "tail,constant,shown",
    [
        (["Neg", "Log"], None, "quantile nan"),  # log of a negative price
        (["Div"], 0.0, "quantile inf"),
        (["Neg"], None, "quantile -"),  # negative prices
        (["Mul"], 0.0, "quantile 0.0"),  # a price of zero
        (["Reciprocal"], None, "quantiles for AAA that decrease with their level"),
    ],
    ids=["nan", "inf", "negative", "zero", "crossing"],
)
def test_a_model_whose_quantiles_are_no_prices_or_cross_writes_nothing(
    tiny_quantile_onnx, tmp_path, tail, constant, shown
):
    broken = rewired(tiny_quantile_onnx[0], tmp_path / "q.onnx", tail, constant, "quantiles")
    model = OnnxForecaster(broken)
    forecasts, _ = model.predict_quantiles(tiny_quantile_onnx[1])
    assert np.isfinite(forecasts).all() and (forecasts > 0).all()  # only the quantiles broke
    with pytest.raises(InputError, match=rf"^model file \S*q.onnx forecasts {shown}"):
        forecast_table(model, prices_of("AAA"), "1", "run")


@pytest.mark.parametrize("factor", [1.5, 0.5])
def test_a_forecast_that_is_not_the_median_of_its_quantiles_writes_nothing(
    tiny_quantile_onnx, tmp_path, factor
):
    broken = rewired(tiny_quantile_onnx[0], tmp_path / "f.onnx", ["Mul"], factor, "forecast")
    with pytest.raises(InputError, match="forecasts a price for AAA outside its own 80% interval"):
        forecast_table(OnnxForecaster(broken), prices_of("AAA"), "1", "run")


def test_levels_that_print_alike_still_name_distinct_parquet_columns(tmp_path):
    levels = (0.025, 0.02500001, 0.1, 0.5, 0.9, 0.97499999, 0.975)
    windows = export_tiny_model(tmp_path / "m.onnx", quantiles=levels)
    table = forecast_table(OnnxForecaster(tmp_path / "m.onnx"), prices_of("AAA"), "1", "run")
    parquet = pd.read_parquet(write_forecasts(table, tmp_path / "f.parquet"))
    names = [c for c in parquet.columns if c.startswith("quantile_")]
    assert names == [f"quantile_{level!r}" for level in levels] and len(set(names)) == 7
    assert len(windows) == 40


def test_a_model_whose_metadata_names_levels_but_that_has_no_quantiles_output_is_refused(
    tiny_onnx, tmp_path
):
    levels = {"quantile_levels": "[0.025, 0.1, 0.5, 0.9, 0.975]"}
    path = alter_metadata(tiny_onnx[0], tmp_path / "no-q.onnx", levels)
    shape = r"\[batch, 3, 5\]$"
    with pytest.raises(InputError, match=r"has no 'quantiles' output, but .* of shape " + shape):
        OnnxForecaster(path)


@pytest.mark.parametrize("to", [onnx.TensorProto.INT64, onnx.TensorProto.STRING])
def test_quantiles_that_are_not_float_prices_are_refused_when_opened(
    tiny_quantile_onnx, tmp_path, to
):
    model = onnx.load_model(str(tiny_quantile_onnx[0]))
    for node in model.graph.node:
        node.input[:] = ["q0" if name == "quantiles" else name for name in node.input]
        node.output[:] = ["q0" if name == "quantiles" else name for name in node.output]
    model.graph.node.append(onnx.helper.make_node("Cast", ["q0"], ["quantiles"], to=to))
    (output,) = [o for o in model.graph.output if o.name == "quantiles"]
    output.type.tensor_type.elem_type = to
    onnx.save_model(model, str(tmp_path / "cast.onnx"))
    with pytest.raises(InputError, match=r"'quantiles' holds tensor\((int64|string)\), not float"):
        OnnxForecaster(tmp_path / "cast.onnx")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    log_steps=st.lists(
        st.floats(-0.3, 0.3, allow_nan=False), min_size=10, max_size=10
    ),  # daily log returns: calm to wild
    level=st.floats(0.01, 10_000),
    volume=st.floats(0, 1e9),
)
def test_bounds_are_ordered_for_any_price_path(tiny_quantile_onnx, log_steps, level, volume):
    frame = bars()
    close = level * np.exp(np.cumsum(log_steps))
    tail = frame.index[-10:]
    frame.loc[tail, ["Open", "High", "Low", "Close"]] = np.column_stack([close] * 4)
    frame.loc[tail, "Volume"] = volume
    table = forecast_table(OnnxForecaster(tiny_quantile_onnx[0]), {"AAA": frame}, "1", "run")
    assert_ordered(table)


@pytest.mark.parametrize(
    "levels,says",
    [
        ("[0.1, 0.5", "is not a JSON list of numbers"),
        ('{"0.5": 1}', "is not a JSON list of numbers"),
        ('[0.1, "0.5", 0.9]', "is not a JSON list of numbers"),
        ("[true]", "is not a JSON list of numbers"),
        ("[]", "is not usable: it is empty"),
        ("[0.9, 0.5, 0.1]", "must increase strictly"),
        ("[0.025, 0.1, 0.5, 0.9]", "must be symmetric about 0.5"),
        ("[0.2, 0.5, 0.8]", "lack 0.025, 0.1, 0.9, 0.975"),
        ("[0, 0.025, 0.1, 0.5, 0.9, 0.975, 1]", "each inside (0, 1)"),
    ],
)
def test_malformed_quantile_levels_are_refused_when_opened(
    tiny_quantile_onnx, tmp_path, levels, says
):
    message = refusal(tiny_quantile_onnx[0], {"quantile_levels": levels}, tmp_path)
    assert f"metadata quantile_levels {levels!r} " in message and says in message


LEVEL_LISTS = st.one_of(
    st.text(max_size=30),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=11).map(json.dumps),
    st.permutations(DEFAULT_QUANTILES).map(json.dumps),  # sorted, now and then: valid
    st.lists(st.sampled_from(DEFAULT_QUANTILES), max_size=10).map(sorted).map(json.dumps),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(levels=LEVEL_LISTS)
def test_any_quantile_levels_open_or_are_one_line_naming_the_model(
    tiny_quantile_onnx, tmp_path_factory, levels
):
    target = tmp_path_factory.mktemp("levels") / "q.onnx"
    altered = alter_metadata(tiny_quantile_onnx[0], target, {"quantile_levels": levels})
    try:
        model = OnnxForecaster(altered)
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message, message
        # malformed, or well formed but not the graph's nine levels
        said = ("metadata quantile_levels ", "'quantiles' has shape [batch, 3, 9], but its")
        assert message.startswith(tuple(f"model file {altered}: {s}" for s in said)), message
        event("refused")
        return
    event("opened")
    assert len(model.quantile_levels) == 9 and model.quantile_levels == tuple(json.loads(levels))


def test_a_quantile_models_file_declares_its_output_sizes(tiny_quantile_onnx):
    """The tracer leaves the quantiles' last axis symbolic; export writes the contract's sizes,
    so a consumer that checks shapes when it opens the file sees them."""
    session = OnnxForecaster(tiny_quantile_onnx[0]).session
    shapes = {o.name: o.shape for o in session.get_outputs()}
    assert shapes == {"forecast": ["batch", 3], "quantiles": ["batch", 3, len(DEFAULT_QUANTILES)]}
