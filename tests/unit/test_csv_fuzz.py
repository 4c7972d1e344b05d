"""Generated malformed csv folders through the path `forecast --source csv` takes (load_prices,
validation, the latest window, a real OnnxForecaster): a finite forecast, or an InputError whose
one line names the ticker and the folder, never another exception or a Python warning.

`pytest --hypothesis-show-statistics` prints how many cases ran and how they ended."""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
from hypothesis import HealthCheck, event, given, settings

from lstm_pipeline import data, predict
from lstm_pipeline.config import DataConfig, build_config
from lstm_pipeline.errors import InputError, one_line
from tests.csv_fuzz import TICKER, price_folders, write_folder


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same cases on every run and machine
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=price_folders())
def test_a_malformed_csv_gives_a_finite_forecast_or_one_named_input_error(
    tmp_path_factory, tiny_onnx, caplog, case
):
    folder = write_folder(tmp_path_factory.mktemp("fuzz"), case.files)
    forecaster = predict.OnnxForecaster(tiny_onnx[0])
    cfg = DataConfig(tickers=(TICKER,), source="csv", data_dir=str(folder))
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        try:
            if not case.tickers_given:  # the folder scan picks the tickers, as the CLI does
                cfg = build_config(data__source="csv", data__data_dir=str(folder)).data
                assert cfg.tickers == (TICKER,)
            prices = data.load_prices(TICKER, cfg, forecaster.window, "one input window")
            table = predict.forecast_table(forecaster, {TICKER: prices}, "1", "fuzz")
        except InputError as exc:
            line = one_line(exc)
            assert not case.valid, line  # a clean file in any name case, date style or offset
            event(f"exit 2: {kind_of(line)}")
            scan = not case.tickers_given and line.startswith(f"data_dir {folder} holds no ")
            assert scan or line.startswith(f"{TICKER}: ") and str(folder) in line, line
            assert "\n" not in str(exc)
            skips = [r for r in caplog.records if "skipped" in r.getMessage()]
            assert not (scan and skips), skips  # the error line says it, no warning before it
        else:
            event("exit 0")
            assert len(table) == forecaster.horizon
            assert np.isfinite(table[["forecast", "last_close"]].to_numpy(float)).all(), table
    assert [str(w.message) for w in caught] == []
    assert all(r.getMessage().isprintable() for r in caplog.records)  # each one line


def kind_of(line: str) -> str:
    """The error without its file name, numbers and quoted text: what the statistics count."""
    what = re.split(r"\.csv|\.CSV", line, maxsplit=1)[-1]
    return re.sub(r"'.*'|\d[\w.+-]*", "#", what)[:60]
