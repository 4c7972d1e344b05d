"""Input drift through a real exported model: the training profile in its ONNX metadata, read
back by onnxruntime's session, and the forecast's `input_drift` column."""

import json
import math

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_pipeline import drift, features, pipeline
from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import InputError
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.predict import OnnxForecaster, forecast_table
from lstm_pipeline.train import FitResult
from tests.conftest import alter_metadata
from tests.synthetic import make_prices

CFG = FeatureConfig(window=10, horizon=3)


def prices_of(*tickers: str, rows: int = 400) -> dict[str, pd.DataFrame]:
    frames = {}
    for seed, ticker in enumerate(tickers):
        frame = make_prices(rows, seed).set_index("Date")[list(FEATURES)].astype(float)
        frames[ticker] = frame.set_axis(pd.DatetimeIndex(frame.index), axis=0)
    return frames


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[OnnxForecaster, dict[str, pd.DataFrame]]:
    """A tiny model exported the way training exports it (pipeline.export_model)."""
    prices = prices_of("AAA", "BBB")
    windows = features.build_window_sets(prices, CFG)
    torch.manual_seed(0)
    net = LSTMForecaster(len(FEATURES), 3, hidden_size=8, num_layers=1, dropout=0.0)
    path = tmp_path_factory.mktemp("drift") / "model.onnx"
    pipeline.export_model(FitResult(net.eval()), windows, path, "run", "2021-07-13")
    return OnnxForecaster(path), prices


def test_an_exported_model_carries_the_profile_of_its_train_split_only(exported):
    model, prices = exported
    train = {t: features.split_by_time(p, CFG, t)["train"] for t, p in prices.items()}
    assert model.input_profile == drift.profile_of(train)  # the same split boundaries
    everything = drift.profile_of(prices)
    assert model.input_profile != everything  # validation and test rows are not in it
    assert json.loads(model.metadata[drift.PROFILE_KEY]) == model.input_profile


def test_a_forecast_fills_input_drift_per_ticker_on_every_horizon_row(exported):
    model, prices = exported
    recent = {t: p.iloc[-60:] for t, p in prices.items()}
    table = forecast_table(model, recent, "1", "run")
    expected = drift.drift_scores(model.input_profile or {}, recent)
    assert table["input_drift"].notna().all()
    for ticker, rows in table.groupby("ticker"):
        assert rows["input_drift"].tolist() == [expected[ticker]] * 3


def test_a_model_without_a_profile_forecasts_nan_drift(tiny_onnx):
    model = OnnxForecaster(tiny_onnx[0])
    assert model.input_profile is None
    table = forecast_table(model, prices_of("AAA"), "1", "run")
    assert table["input_drift"].isna().all() and len(table) == 3


def refusal(path, text: str, tmp_path) -> str:
    altered = alter_metadata(path, tmp_path / "altered.onnx", {drift.PROFILE_KEY: text})
    with pytest.raises(InputError) as caught:
        OnnxForecaster(altered)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"model file {altered}: metadata input_profile ")
    return message


GOOD = {
    "days": 20,
    "stats": list(drift.STATS),
    "tickers": {"AAA": [-4.6, 0.1, 14.9, 0.08]},
    "pooled": [-4.6, 0.1, 14.9, 0.06],
}


def spoiled(key: str, value: object) -> str:
    return json.dumps({**GOOD, key: value})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{cut", "not a JSON object"),
        ("[]", "not a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "pooled"}), "not a JSON object"),
        (spoiled("days", 0), "days is not an integer"),
        (spoiled("days", True), "days is not an integer"),
        (spoiled("days", "20"), "days is not an integer"),
        (spoiled("stats", ["log_volume", "log_volatility"]), "stats is not"),
        (spoiled("tickers", []), "tickers is not an object"),
        (spoiled("pooled", [1, 2, 3]), "pooled is not 4 finite numbers"),
        (spoiled("pooled", [1, -0.1, 3, 0.1]), "pooled is not 4 finite numbers"),
        (spoiled("tickers", {"AAA": [1, 0.1, "x", 0.1]}), "AAA is not 4 finite numbers"),
        (spoiled("tickers", {"AAA": [1, 0.1, 1, None]}), "AAA is not 4 finite numbers"),
        (spoiled("tickers", {"AAA": [1, 0.1, 1e999, 0.1]}), "AAA is not 4 finite numbers"),
        (spoiled("tickers", {"AAA": [1, 0.1, True, 0.1]}), "AAA is not 4 finite numbers"),
    ],
)
def test_a_malformed_profile_is_one_line_naming_the_model(tiny_onnx, tmp_path, text, reason):
    assert reason in refusal(tiny_onnx[0], text, tmp_path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.sampled_from(sorted(GOOD)), value=JSON_VALUES)
def test_any_other_value_in_a_profile_is_refused_or_read_as_given(tiny_onnx, tmp_path, key, value):
    """A neighbour of a good profile: one field replaced by any JSON value."""
    text = json.dumps({**GOOD, key: value})
    altered = alter_metadata(tiny_onnx[0], tmp_path / "altered.onnx", {drift.PROFILE_KEY: text})
    try:
        profile = OnnxForecaster(altered).input_profile
    except InputError as exc:
        assert "\n" not in str(exc) and "metadata input_profile" in str(exc)
        return
    assert profile == json.loads(text)  # accepted: then it scores every ticker, never raises
    scores = drift.drift_scores(profile, prices_of("AAA", "ZZZ", rows=30))
    spans = profile["days"] < 30  # 30 rows hold a span of 29 returns at most
    assert [math.isfinite(x) for x in scores] == [spans, spans]
