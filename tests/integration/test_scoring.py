"""`lstm-pipeline score` through the CLI, on the session's Prefect server and a real sqlite MLflow
store: a csv folder driven day by day (a bar per ticker, `forecast`, `score`) grows the history,
a re-run day adds nothing, forecasts are scored once they mature and never before, the live
metrics are curves of the version's monitoring run; a regime break emits one degraded event;
store faults and a failed score write leave the store consistent."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.alerts import DEGRADED
from flows.scoring import SCORES_KEY
from lstm_pipeline.history import ForecastHistory
from lstm_pipeline.tracking.monitoring import MODEL_VERSION_TAG, MONITORING_TAG
from tests.conftest import run_cli
from tests.integration.processes import closed_port
from tests.integration.test_input_drift_cli import with_regime_break
from tests.integration.test_schedules import post
from tests.synthetic import make_prices

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clis_on_prefect_server")]

START_ROWS = 60  # bars each ticker has before the first forecast
MODEL = "model"  # the .onnx file's name: the history's model name for its forecasts
HORIZON = 3  # the tiny model's


class Market:
    """A csv folder of AAA and BBB whose bars are revealed one day at a time."""

    def __init__(self, folder: Path, frames: dict[str, pd.DataFrame], rows: int) -> None:
        self.folder, self.frames, self.rows = folder, frames, rows
        folder.mkdir(parents=True, exist_ok=True)
        self._write()

    def next_day(self) -> None:
        self.rows += 1
        self._write()

    def last_bar(self) -> str:
        return str(self.frames["AAA"]["Date"].iloc[self.rows - 1])

    def _write(self) -> None:
        for ticker, frame in self.frames.items():
            frame.iloc[: self.rows].to_csv(self.folder / f"{ticker}.csv", index=False)


@pytest.fixture
def market(tmp_path: Path) -> Market:
    frames = {"AAA": make_prices(200, 0), "BBB": make_prices(200, 1)}
    return Market(tmp_path / "prices", frames, START_ROWS)


def cli(command: str, market: Market, tmp_path: Path, *extra: str) -> dict:
    """`lstm-pipeline COMMAND` on the market's folder with --json: its JSON (exit 0 asserted)."""
    proc = run_cli(command, *data_args(market), *extra, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def data_args(market: Market) -> list[str]:
    return ["--source", "csv", "--data-dir", str(market.folder)]


def forecast(market: Market, tmp_path: Path, model: Path) -> dict:
    output = str(tmp_path / "out" / "forecasts.csv")
    return cli("forecast", market, tmp_path, "--model-uri", str(model), "--output", output)


def score(market: Market, tmp_path: Path, tracking_uri: str, *extra: str) -> dict:
    args = ("--model-name", MODEL, "--tracking-uri", tracking_uri, *extra)
    return cli("score", market, tmp_path, *args)


def test_day_by_day_the_history_grows_and_matured_forecasts_become_curves(
    market, tmp_path, tiny_quantile_onnx, store, forecast_history, clis_on_prefect_server
):
    model = tiny_quantile_onnx[0]
    forecast(market, tmp_path, model)
    forecast(market, tmp_path, model)  # the same day again: replaced, not added
    with ForecastHistory.open(forecast_history) as history:
        assert len(history.forecasts(MODEL)) == 2 * HORIZON

    # nothing matured: one line on stdout, exit 0, and still an object for --json
    proc = run_cli("score", *data_args(market), "--model-name", MODEL, "--json", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("nothing to score")]
    first_target = pd.bdate_range(market.last_bar(), periods=2)[1].date()
    assert line == (
        f"nothing to score yet: {2 * HORIZON} forecasts, none matured (first target date "
        f"{first_target}, last bar {market.last_bar()})"
    )
    assert json.loads(proc.stdout.splitlines()[-1])["versions"] == []

    days = 4
    for _ in range(days):
        market.next_day()
        forecast(market, tmp_path, model)
    result = score(market, tmp_path, store.uri)
    again = score(market, tmp_path, store.uri)  # the same data: nothing new anywhere

    with ForecastHistory.open(forecast_history) as history:
        forecasts = history.forecasts(MODEL)
        scores = history.scores(MODEL)
    assert len(forecasts) == (days + 1) * 2 * HORIZON  # one as_of per day, the rerun replaced
    last_bar = pd.Timestamp(market.last_bar())
    # a forecast whose target date has no bar yet is never scored
    matured = forecasts[forecasts["target_date"] <= last_bar]
    assert result["matured"] == {"file": len(matured)} == again["matured"]
    assert pd.to_datetime(scores["through"]).max() == last_bar
    assert result["rows"] == again["rows"] == len(scores)
    assert again["changes"] == [] or again["changes"] == result["changes"][:0]

    # the version's monitoring run: live_ curves at step = trading days live
    client = MlflowClient(store.uri)
    [run] = [
        r
        for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            f"tags.`{MONITORING_TAG}` = 'live'",
        )
        if r.data.tags[MODEL_VERSION_TAG] == "file"
    ]
    assert run.info.run_id == result["monitoring_runs"]["file"]
    history = client.get_metric_history(run.info.run_id, "live_mase_live")
    pooled = scores[(scores["horizon"] == 0) & (scores["window"] == "live")]
    assert sorted(m.step for m in history) == sorted(pooled["days_live"].astype(int))
    assert len({m.step for m in history}) == len(history)  # the second score logged none twice
    assert {"live_mase_20", "live_coverage_80_60", "live_mase_live_h1"} <= set(run.data.metrics)
    latest = {(r["horizon"], r["window"]): r for r in result["latest"]}
    assert latest[(0, "live")]["mase"] == pytest.approx(run.data.metrics["live_mase_live"], 1e-3)

    # the Prefect UI's table: the latest row of each horizon and window, as --json has them
    key = {"artifacts": {"key": {"any_": [SCORES_KEY]}}}
    [artifact] = post(clis_on_prefect_server, "artifacts/latest/filter", key)
    shown = json.loads(artifact["data"])
    assert {(r["horizon"], r["window"]) for r in shown} == set(latest)
    assert len(shown) == (HORIZON + 1) * 3  # horizons 0..3 x windows 20, 60, live


def test_a_regime_break_emits_one_degraded_event_and_records_its_state(
    tmp_path, tiny_quantile_onnx, store, forecast_history, clis_on_prefect_server
):
    frames = {"AAA": make_prices(200, 0), "BBB": make_prices(200, 1)}
    rows = START_ROWS + 8
    frames = {
        t: with_regime_break(f.iloc[: rows + 1], factor=4.0, days=10) for t, f in frames.items()
    }
    market = Market(tmp_path / "prices", frames, rows - 8)
    config = tmp_path / "monitor.yaml"
    config.write_text("monitor: {windows: [3], min_matured: 2, mase_margin: 0.0}\n")
    for _ in range(8):
        forecast(market, tmp_path, tiny_quantile_onnx[0])
        market.next_day()
    first = score(market, tmp_path, store.uri, "--config", str(config))
    second = score(market, tmp_path, store.uri, "--config", str(config))

    degraded = [c for c in first["changes"] if c["state"] == "degraded"]
    assert degraded and all(c["event_id"] for c in degraded), first["verdicts"]
    assert second["changes"] == []  # the same state: no new event
    with ForecastHistory.open(forecast_history) as history:
        states = history.alert_states(MODEL)
    assert {(c["model_version"], c["metric"], c["window"]) for c in degraded} <= {
        key for key, state in states.items() if state == "degraded"
    }
    wanted = {c["event_id"] for c in degraded}
    seen: dict[str, dict] = {}
    for _ in range(60):  # the server persists events in batches
        found = post(
            clis_on_prefect_server, "events/filter", {"filter": {"event": {"name": [DEGRADED]}}}
        )
        seen = {e["id"]: e for e in found["events"]}  # type: ignore[call-overload]
        if wanted <= set(seen):
            break
        time.sleep(1)
    assert wanted <= set(seen)
    event = seen[degraded[0]["event_id"]]
    assert event["resource"]["prefect.resource.id"] == f"lstm-pipeline.model.{MODEL}.file"
    assert event["payload"]["metric"] == degraded[0]["metric"]
    assert event["payload"]["window"] == "3"


def test_an_unreachable_store_is_exit_1_and_one_line(tmp_path, market):
    url = f"postgresql://alice:secret@127.0.0.1:{closed_port()}/forecasts"
    proc = run_cli("score", *data_args(market), "--forecast-store", url, cwd=tmp_path)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(
        "lstm-pipeline score: failed: ForecastStoreError: forecast store postgresql://***@127.0.0.1:"
    )
    assert "secret" not in proc.stdout + proc.stderr


# The score write fails (as a kill between its delete and its insert would leave it): the
# transaction rolls back, the command says so in one line, and the next run completes.
FAIL_SCORE_INSERT = """\
from lstm_pipeline import history
real = history._replace
def failing(conn, table, *args):
    real(conn, table, *args)
    if table.name == "scores":
        raise OSError("disk full (injected after the insert)")
history._replace = failing
"""


def test_a_failed_score_write_rolls_back_and_a_rerun_completes(
    market, tmp_path, tiny_quantile_onnx, store, forecast_history
):
    for _ in range(3):
        forecast(market, tmp_path, tiny_quantile_onnx[0])
        market.next_day()
    args = ["score", *data_args(market), "--model-name", MODEL, "--tracking-uri", store.uri]
    proc = run_cli(*args, cwd=tmp_path, prelude=FAIL_SCORE_INSERT)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"lstm-pipeline score: failed: ForecastStoreError: forecast store {forecast_history}: "
        "recording scores failed: disk full (injected after the insert)"
    ]
    with ForecastHistory.open(forecast_history) as history:
        assert history.scores(MODEL).empty
    result = score(market, tmp_path, store.uri)
    with ForecastHistory.open(forecast_history) as history:
        assert len(history.scores(MODEL)) == result["rows"] > 0


def test_tickers_naming_none_of_the_history_is_exit_2_and_one_line(
    market, tmp_path, tiny_quantile_onnx
):
    forecast(market, tmp_path, tiny_quantile_onnx[0])
    args = ["score", *data_args(market), "--model-name", MODEL, "--tickers", "ZZZ"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "lstm-pipeline score: error: --tickers ZZZ: none has forecasts in the history (it "
        "holds AAA, BBB)"
    ]


def test_score_before_any_forecast_is_one_line_and_creates_no_store(tmp_path, monkeypatch):
    from lstm_pipeline.config import FORECAST_STORE_ENV

    monkeypatch.delenv(FORECAST_STORE_ENV)  # the default, relative to the working directory
    proc = run_cli("score", "--source", "sample", "--json", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines()[-2] == (
        "nothing to score yet: no forecast history at sqlite:///forecasts/forecasts.db"
    )
    assert json.loads(proc.stdout.splitlines()[-1])["versions"] == []
    assert not (tmp_path / "forecasts").exists()


# SIGKILL, the OOM killer's way (no handler, no rollback in Python): inside the score write's
# transaction after its insert, or once the scores are committed, at the first MLflow batch.
KILL_IN_SCORE_WRITE = """\
import os, signal
from lstm_pipeline import history
real = history._replace
def killed(conn, table, *args):
    real(conn, table, *args)
    if table.name == "scores":
        os.kill(os.getpid(), signal.SIGKILL)
history._replace = killed
"""
KILL_IN_MLFLOW_LOG = """\
import os, signal
from mlflow.tracking import MlflowClient
MlflowClient.log_batch = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(
    "prelude", [KILL_IN_SCORE_WRITE, KILL_IN_MLFLOW_LOG], ids=["store", "mlflow"]
)
def test_a_killed_score_run_leaves_the_store_consistent_and_a_rerun_equals_an_uninterrupted_one(
    market, tmp_path, tiny_quantile_onnx, store, forecast_history, prelude
):
    for _ in range(4):
        forecast(market, tmp_path, tiny_quantile_onnx[0])
        market.next_day()
    untouched = tmp_path / "untouched.db"  # the history as it was: scored without a kill
    with sqlite3.connect(forecast_history.removeprefix("sqlite:///")) as source:
        with sqlite3.connect(untouched) as copy:
            source.backup(copy)
    args = ["score", *data_args(market), "--model-name", MODEL, "--tracking-uri", store.uri]
    proc = run_cli(*args, cwd=tmp_path, prelude=prelude)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with ForecastHistory.open(forecast_history) as history:
        left = history.scores(MODEL)  # readable: none, or every score of the run
    assert left.empty if prelude == KILL_IN_SCORE_WRITE else len(left) > 0

    rerun = score(market, tmp_path, store.uri)
    uninterrupted = score(market, tmp_path, store.uri, "--forecast-store", f"sqlite:///{untouched}")
    with ForecastHistory.open(forecast_history) as history:
        scores = history.scores(MODEL)
    with ForecastHistory.open(f"sqlite:///{untouched}") as history:
        pd.testing.assert_frame_equal(scores, history.scores(MODEL))
    assert rerun["rows"] == uninterrupted["rows"] == len(scores)
    # the version's curves: every day once, none lost to the kill
    curve = MlflowClient(store.uri).get_metric_history(
        rerun["monitoring_runs"]["file"], "live_mase_live"
    )
    pooled = scores[(scores["horizon"] == 0) & (scores["window"] == "live")]
    assert sorted(m.step for m in curve) == sorted(pooled["days_live"].astype(int))
