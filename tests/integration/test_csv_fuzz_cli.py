"""Generated malformed csv folders through the real CLI: `lstm-pipeline forecast --source csv`
exits 0 with a finite forecast file, or 2 with exactly one stderr line, no traceback and no file
written; never another code. Each case runs `flows.cli.main` in this process the way
tests/integration/cli_batch.py does (file descriptors 1 and 2 caught), its flow on the session's
Prefect server: a subprocess per case would cost seconds of imports each, and the many cheaper
cases run in tests/unit/test_csv_fuzz.py.

`pytest --hypothesis-show-statistics` prints how many cases ran and how they ended."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings

from tests.csv_fuzz import TICKER, price_folders, write_folder
from tests.integration.cli_batch import run_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cwd_kept():
    """run_case changes the working directory: give it back after the module."""
    before = os.getcwd()
    yield
    os.chdir(before)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same cases on every run and machine
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=price_folders())
def test_forecast_on_a_malformed_csv_exits_0_with_finite_forecasts_or_2_with_one_line(
    tmp_path_factory, tiny_onnx, prefect_harness, cwd_kept, capsys, case
):
    root = tmp_path_factory.mktemp("cli-fuzz")
    folder = write_folder(root / "prices", case.files)
    work = root / "work"
    work.mkdir()
    args = ["forecast", "--source", "csv", "--data-dir", str(folder)]
    args += ["--tickers", TICKER] if case.tickers_given else []
    args += ["--model-uri", str(tiny_onnx[0]), "--output", "out.csv"]
    with capsys.disabled():  # sys.stdout and sys.stderr write to the descriptors run_case catches
        result = run_case(args, str(work))
    assert result["code"] in (0, 2), result
    assert result["code"] == 0 or not case.valid, result["stderr"]  # clean bars must forecast
    assert "Traceback" not in result["stdout"] + result["stderr"], result
    assert "Warning:" not in result["stderr"], result["stderr"]  # no Python warning either
    if result["code"] == 2:
        event("exit 2")
        lines = result["stderr"].strip().splitlines()
        assert len(lines) == 1, result["stderr"]
        scan = f"lstm-pipeline forecast: error: data_dir {folder} holds no TICKER.csv files"
        assert lines[0].startswith((f"lstm-pipeline forecast: error: {TICKER}: ", scan)), lines
        assert str(folder) in lines[0], lines[0]
        assert list(work.iterdir()) == []  # no forecast file, no store, nothing
    else:
        event("exit 0")
        table = pd.read_csv(work / "out.csv")
        assert len(table) > 0 and (table["ticker"] == TICKER).all()
        assert np.isfinite(table["forecast"].to_numpy(float)).all(), table
        assert Path(work / "out.csv").stat().st_size > 0
