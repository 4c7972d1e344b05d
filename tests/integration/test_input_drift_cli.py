"""Input drift through the CLI: a ticker whose volatility broke out of its training regime is
named in one warning line, its score is in the forecast file, and the forecast still succeeds."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline import drift
from tests.conftest import alter_metadata, run_cli
from tests.synthetic import make_prices

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clis_on_prefect_server")]

TRAIN_ROWS = 240  # what the model was trained on: each ticker's first rows


def with_regime_break(frame: pd.DataFrame, factor: float, days: int = 30) -> pd.DataFrame:
    """`frame` (make_prices' layout) with its last `days` daily log returns times `factor`."""
    returns = np.diff(np.log(frame["Close"].to_numpy()))
    returns[-days:] *= factor
    close = frame["Close"].iloc[0] * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    ratio = close / frame["Close"].to_numpy()
    columns = ["Open", "High", "Low", "Close", "Adj Close"]
    return frame.assign(**{c: frame[c] * ratio for c in columns})


def test_a_volatility_regime_break_is_one_warning_line_naming_the_ticker(tmp_path: Path, tiny_onnx):
    folder = tmp_path / "prices"
    folder.mkdir()
    frames = {"AAA": make_prices(400, 0), "BBB": make_prices(400, 1)}
    train = {t: f.iloc[:TRAIN_ROWS] for t, f in frames.items()}
    profile = json.dumps(drift.profile_of(train))
    model = alter_metadata(tiny_onnx[0], tmp_path / "model.onnx", {drift.PROFILE_KEY: profile})
    frames["BBB"] = with_regime_break(frames["BBB"], factor=4.0)
    for ticker, frame in frames.items():
        frame.to_csv(folder / f"{ticker}.csv", index=False)
    output = tmp_path / "forecasts.csv"
    args = ["--source", "csv", "--data-dir", str(folder), "--output", str(output)]
    proc = run_cli("forecast", *args, "--model-uri", str(model), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if "input drift" in line]
    table = pd.read_csv(output)
    scores = table.drop_duplicates("ticker").set_index("ticker")["input_drift"]
    assert scores["BBB"] > drift.DRIFT_THRESHOLD >= scores["AAA"]  # the model's window is 10:
    # the forecast kept the 21 rows a 20-day span needs
    assert line.endswith(
        f"input drift in 1 of 2 ticker(s): the last {drift.DAYS} days' volatility or volume "
        f"lies more than 3 robust standard deviations from the model's training data: "
        f"BBB {scores['BBB']:.1f}"
    )
    assert "AAA" not in line and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["rows"] == 2 * 3
