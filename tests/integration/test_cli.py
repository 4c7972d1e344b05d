"""The CLI in fresh interpreters: exit codes, one-line errors, JSON, and a torch-free forecast."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.predict import FORECAST_COLUMNS, OnnxForecaster
from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clis_on_prefect_server")]


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_price_file_exits_2_with_one_line_naming_ticker_file_and_date(tmp_path, csv_dir):
    bad = csv_dir / "BBB.csv"
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join([*lines[:5], lines[3], *lines[5:]]) + "\n")  # a repeated date
    proc = run_cli(
        "train",
        "--source",
        "csv",
        "--data-dir",
        str(csv_dir),
        "--tickers",
        "BBB",
        "--tracking-uri",
        f"sqlite:///{tmp_path}/m.db",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, f"BBB: file {bad}: date 2020-01-03 repeats")
    assert not (tmp_path / "mlflow").exists() and not (tmp_path / "m.db").exists()


@pytest.mark.parametrize(
    "failure,code,reason",
    [
        ("unknown", 2, "NOPE: yfinance returned no 1d bars (unknown or delisted"),
        ("offline", 1, "NOPE: yfinance failed after 2 attempt(s) (DNSError("),
    ],
)
def test_fetch_with_one_failing_ticker_caches_the_other_and_exits_non_zero(
    tmp_path, failure, code, reason
):
    config = tmp_path / "fast-retries.yaml"
    config.write_text("data: {retry_attempts: 2, retry_base_delay: 0}\n")
    offline = ("NOPE",) if failure == "offline" else ()
    proc = run_cli(
        "fetch",
        "GOOD",
        "NOPE",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--config",
        str(config),
        "--json",
        cwd=tmp_path,
        prelude=f"from tests.fake_yahoo import install\ninstall({{'GOOD': 50}}, {offline!r})",
    )
    assert proc.returncode == code, proc.stderr
    assert (tmp_path / "cache" / "1d" / "GOOD.parquet").is_file()
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and reason in errors[0], proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "lstm-pipeline fetch: 1 ticker(s) failed: NOPE"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tickers"]["GOOD"]["rows"] == 50 and list(result["failed"]) == ["NOPE"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["train", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["train", "--source", "ftp"], "argument --source: invalid choice: 'ftp'"),
        (["train", "--start", "2020-02-30"], "'2020-02-30' is not a date"),
        (["train", "--tickers", "../etc"], "invalid ticker '../etc'"),
        (["fetch", "A B"], "invalid data.tickers: invalid ticker 'A B'"),
        (["forecast", "--tickers", "AAPL", "../x"], "invalid ticker '../x'"),
        (["forecast", "--model-uri", "nothing.onnx"], "model nothing.onnx: not a models:/ URI"),
        (["backtest", "--folds", "0"], "--folds 0 must be from 1 to 1,000"),
        # whole numbers no run could use, nor Prefect's database store as a parameter (int64)
        (["backtest", "--fold-days", "9" * 23], f"--fold-days {'9' * 23} must be from 1 to"),
        (["tune", "--trials", "100001"], "--trials 100001 must be from 1 to 100,000"),
        (  # the folds are checked before the store and the run are made
            ["backtest", "--source", "sample", "--tickers", "AAPL", "--folds", "30"],
            "are needed for 30 folds of 126 days",
        ),
        (["train", "--seed", "4294967296"], "invalid train.seed: Input should be less than"),
        (["train", "--seed", "-1"], "invalid train.seed: Input should be greater than"),
        (
            ["train", "--task-runner", "dask", "--dask-address", "notaurl"],
            "--dask-address 'notaurl' is not a scheduler address such as tcp://scheduler:8786",
        ),
        (["forecast", "--output", f"out/{'x' * 300}.csv"], "name too long (file names up to"),
        (
            ["tune", "--task-runner", "threads", "--dask-address", "tcp://s:8786"],
            "--dask-address tcp://s:8786 needs --task-runner dask, not threads",
        ),
        (["train", "--max-failure-ratio", "1.5"], "invalid data.max_failure_ratio"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, fragment):
    assert_one_line_error(run_cli(*args, cwd=tmp_path), fragment)
    assert list(tmp_path.iterdir()) == []  # no store, cache or output folder


def test_config_file_with_unknown_key_exits_2(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("train: {epoch: 3}\n")
    proc = run_cli("train", "--config", str(config), "--source", "sample", cwd=tmp_path)
    assert_one_line_error(proc, "invalid train.epoch", "bad.yaml")


def test_forecast_path_never_imports_torch_nor_unpickles(tmp_path: Path, tiny_onnx, csv_dir):
    """A forecast job runs on onnxruntime, pandas and the registry alone, and never unpickles
    (a pickle can run any code): the model is an ONNX file, nothing else is loaded."""
    from lstm_pipeline.tracking import Store
    from tests.unit.test_registry import register

    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    _, version = register(Store.open(uri), tiny_onnx)
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).set_registered_model_alias("lstm-forecaster", "champion", version)
    guard = (
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "import atexit, pickle\n"
        "unpickled = []\n"
        "def refuse(*args, **kwargs):\n"
        "    unpickled.append('pickle.load(s)')\n"
        "    raise RuntimeError('unpickling refused')\n"
        "pickle.load = pickle.loads = refuse\n"
        "sys.addaudithook(lambda event, args: event == 'pickle.find_class' and "
        "unpickled.append(args))  # any unpickler that meets a class, C ones included\n"
        "atexit.register(lambda: print('torch imported:', "
        "sys.modules.get('torch') is not None, 'unpickled:', unpickled))"
    )
    output = tmp_path / "forecasts.parquet"
    proc = run_cli(
        "forecast",
        "--source",
        "csv",
        "--data-dir",
        str(csv_dir),
        "--tickers",
        "AAA",
        "BBB",
        "--tracking-uri",
        uri,
        "--output",
        str(output),
        "--json",
        cwd=tmp_path,
        prelude=guard,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "torch imported: False unpickled: []"
    result = json.loads(proc.stdout.strip().splitlines()[-2])
    assert result["rows"] == 6 and result["model_version"] == version
    assert output.is_file()


ORDERED = ["lower_95", "lower_80", "forecast", "upper_80", "upper_95"]  # prices, every row


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_forecast_with_a_quantile_model_writes_ordered_interval_bounds(
    tmp_path: Path, tiny_quantile_onnx, csv_dir, suffix
):
    output = tmp_path / f"forecasts{suffix}"
    model = str(tiny_quantile_onnx[0])
    args = ["--source", "csv", "--data-dir", str(csv_dir), "--output", str(output)]
    proc = run_cli("forecast", *args, "--model-uri", model, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    table = pd.read_csv(output) if suffix == ".csv" else pd.read_parquet(output)
    levels = OnnxForecaster(model).quantile_levels
    every_quantile = [f"quantile_{level:g}" for level in levels] if suffix == ".parquet" else []
    assert list(table.columns) == [*FORECAST_COLUMNS, *every_quantile]
    assert len(table) == 2 * 3 and table[ORDERED].notna().all().all()
    assert (np.diff(table[ORDERED].to_numpy(float), axis=1) >= 0).all(), table[ORDERED]
    if every_quantile:
        assert (np.diff(table[every_quantile].to_numpy(float), axis=1) >= 0).all()
        assert (table["lower_80"] == table["quantile_0.1"]).all()


def test_forecast_with_an_older_model_leaves_the_bounds_empty_and_warns_once(
    tmp_path: Path, tiny_onnx, csv_dir
):
    """Two tickers, one warning line: per forecast, not per ticker."""
    output = tmp_path / "forecasts.csv"
    model = str(tiny_onnx[0])
    args = ["--source", "csv", "--data-dir", str(csv_dir), "--output", str(output)]
    proc = run_cli("forecast", *args, "--model-uri", model, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.endswith(
        f"model file {model} has no quantiles output: lower_95, lower_80, upper_80 and upper_95 "
        "are empty (retrain to get calibrated intervals)"
    )
    table = pd.read_csv(output)
    assert list(table.columns) == list(FORECAST_COLUMNS) and len(table) == 2 * 3
    assert table[["lower_95", "lower_80", "upper_80", "upper_95"]].isna().all().all()
    assert table["forecast"].notna().all()
