import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline.config import DEFAULT_QUANTILES, SAMPLE_TICKERS, build_config
from lstm_pipeline.errors import InputError


def test_defaults_match_the_documented_design():
    cfg = build_config()
    assert (cfg.features.window, cfg.features.horizon) == (60, 5)
    assert (cfg.model.hidden_size, cfg.model.num_layers, cfg.model.dropout) == (64, 2, 0.2)
    assert cfg.tracking.model_name == "lstm-forecaster"
    assert cfg.data.source == "yfinance"  # DESIGN: the default for real use


def test_yaml_then_overrides(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("features: {window: 20}\ntrain: {max_epochs: 4, lr: 0.01}\n")
    cfg = build_config(path, train__max_epochs=2, train__seed=None)
    assert cfg.features.window == 20 and cfg.train.lr == 0.01 and cfg.train.max_epochs == 2
    assert cfg.flat()["features.window"] == 20 and "data.tickers" in cfg.flat()


@pytest.mark.parametrize(
    "text,message",
    [
        ("train: {epochs: 3}", r"invalid train.epochs \(config .*c.yaml\): Extra inputs"),
        ("features: {window: -5}", r"invalid features.window .*greater than or equal to 2"),
        ("features: {horizon: 0}", r"invalid features.horizon"),
        ("model: {hidden_size: lots}", r"invalid model.hidden_size"),
        ("[1, 2", r"not valid YAML"),
    ],
)
def test_bad_config_files_name_the_file_and_key(tmp_path: Path, text: str, message: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        build_config(path)


def test_a_bad_option_value_is_not_blamed_on_the_config_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {lr: 0.01}\ntracking: {experiment: mine}\n")
    with pytest.raises(InputError) as caught:
        build_config(path, train__max_epochs=-1)
    assert (
        str(caught.value) == "invalid train.max_epochs: Input should be greater than or equal to 1"
    )
    with pytest.raises(InputError, match=r"^invalid tracking.experiment: String should have at"):
        build_config(path, tracking__experiment="")


def test_a_malformed_section_is_the_files_fault_even_with_an_option_in_it(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("train: 5\n")
    with pytest.raises(InputError, match=r"^invalid train \(config .*c.yaml\): Input should be"):
        build_config(path, train__max_epochs=2)  # not a TypeError from merging the option into 5


@pytest.mark.parametrize("name", ["", "  ", "team/lstm", "lstm:v2"])
def test_a_model_name_mlflow_would_refuse_at_registration_is_refused_now(name: str):
    with pytest.raises(InputError, match=r"^invalid tracking.model_name: model name .* must be"):
        build_config(tracking__model_name=name)


def test_a_csv_folder_without_tickers_means_every_csv_file_in_it(tmp_path: Path):
    for name in ("BBB.csv", "AAA.csv", "notes.txt"):
        (tmp_path / name).write_text("")
    cfg = build_config(data__source="csv", data__data_dir=str(tmp_path))
    assert cfg.data.tickers == ("AAA", "BBB")
    given = build_config(data__source="csv", data__data_dir=str(tmp_path), data__tickers=("BBB",))
    assert given.data.tickers == ("BBB",)
    path = tmp_path / "c.yaml"
    path.write_text("data: {tickers: [AAA]}\n")
    assert build_config(path, data__source="csv", data__data_dir=str(tmp_path)).data.tickers == (
        "AAA",
    )
    assert build_config(data__source="sample").data.tickers == SAMPLE_TICKERS


def test_a_csv_folder_without_csv_files_says_so(tmp_path: Path):
    with pytest.raises(InputError, match=rf"^data_dir {tmp_path} holds no TICKER.csv files"):
        build_config(data__source="csv", data__data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "levels,message",
    [
        ([0.1, 0.5], "must be symmetric about 0.5"),
        ([0.9, 0.5, 0.1], "must increase strictly"),
        ([0.0, 0.5, 1.0], "each inside (0, 1)"),
        ([0.1, 0.5, 0.5, 0.9], "must increase strictly"),
        ([0.25, 0.5, 0.75], "lack 0.025, 0.1, 0.9, 0.975"),
        ([0.025, 0.1, 0.4, 0.6, 0.9, 0.975], "lack 0.5"),
    ],
)
def test_quantile_levels_a_model_cannot_calibrate_or_the_file_cannot_use_are_refused(
    levels, message
):
    with pytest.raises(InputError, match=r"invalid model\.quantiles: .*" + re.escape(message)):
        build_config(model__quantiles=levels)


def test_quantile_levels_default_and_a_point_model():
    assert build_config().model.quantiles == DEFAULT_QUANTILES
    assert build_config(model__quantiles=[]).model.quantiles == ()
    wider = [0.01, 0.025, 0.1, 0.5, 0.9, 0.975, 0.99]
    assert build_config(model__quantiles=wider).model.quantiles == tuple(wider)
    assert build_config().flat()["model.quantiles"] == ",".join(map(str, DEFAULT_QUANTILES))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=12))
def test_any_list_of_levels_is_a_config_or_one_line_of_bad_input(levels):
    try:
        cfg = build_config(model__quantiles=levels)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("invalid model.quantiles")
        return
    got = cfg.model.quantiles
    assert got == () or (
        list(got) == sorted(set(got)) and 0.5 in got and all(0 < t < 1 for t in got)
    )


@pytest.mark.parametrize("fractions", [(0.4, 0.4, 0.4), (0.45, 0.1, 0.45), (0.3, 0.3, 0.31)])
def test_held_out_fractions_that_leave_no_rows_to_train_on_are_refused(fractions):
    """They used to hang: rows_needed looked for a series long enough, forever."""
    val, calib, test = fractions
    with pytest.raises(InputError, match=r"invalid features: val_frac \+ calib_frac \+ test_frac"):
        build_config(features__val_frac=val, features__calib_frac=calib, features__test_frac=test)


@settings(max_examples=60, deadline=None)
@given(st.tuples(*[st.floats(0.001, 0.499)] * 3), st.integers(2, 80), st.integers(1, 10))
def test_rows_needed_answers_for_every_accepted_split(fractions, window, horizon):
    from lstm_pipeline.features import rows_needed

    val, calib, test = fractions
    try:
        cfg = build_config(
            features__val_frac=val,
            features__calib_frac=calib,
            features__test_frac=test,
            features__window=window,
            features__horizon=horizon,
        )
    except InputError:
        assert val + calib + test > 0.9
        return
    assert rows_needed(cfg.features) >= 4 * (window + horizon + 1)
