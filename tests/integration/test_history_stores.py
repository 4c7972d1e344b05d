"""The forecast history on SQLite and on a real PostgreSQL server, and through the CLI: every
forecast run is recorded, a re-run day is idempotent, a store that is locked or unreachable
fails the command with one line after the forecast file is written, and a store URL's password
reaches no output and no Prefect record."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import text

from lstm_pipeline import history_schema
from lstm_pipeline.config import FORECAST_STORE_ENV
from lstm_pipeline.errors import ForecastStoreError, one_line
from lstm_pipeline.history import ForecastHistory
from tests.conftest import run_cli
from tests.integration.processes import closed_port
from tests.integration.test_security import prefect_records
from tests.unit.test_history import DAYS, add_note_column, forecast_rows

SECRET = "pg-s3cret word"  # trust auth takes any password: the URL works, the secret must not leak


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/history/forecasts.db"
    return str(request.getfixturevalue("postgres_url"))


def test_reruns_replace_their_day_and_keep_other_days_and_versions(history_url):
    with ForecastHistory.open(history_url) as history:
        history.record_forecasts(forecast_rows(as_of=DAYS[0]), "m")
        history.record_forecasts(forecast_rows(as_of=DAYS[1], version="2"), "m")
        for _ in range(2):
            history.record_forecasts(forecast_rows(as_of=DAYS[1], level=7.0), "m")
        back = history.forecasts("m")
        assert len(history.forecasts("m", "2")) == 6
    assert len(back) == 18
    day_1 = back[(back["as_of"] == DAYS[1]) & (back["model_version"] == "1")]
    assert len(day_1) == 6 and (day_1["last_close"] == 7.0).all()
    assert (back.loc[back["model_version"] == "2", "last_close"] == 100.0).all()
    assert back["as_of"].dtype.kind == "M" and back["horizon"].dtype == "int64"


def test_a_migration_keeps_rows_on_each_database(history_url):
    with ForecastHistory.open(history_url) as history:
        history.record_forecasts(forecast_rows(), "m")
    with ForecastHistory.open(history_url, (*history_schema.MIGRATIONS, add_note_column)) as h:
        with h.engine.connect() as conn:
            assert history_schema.current_version(conn) == 2
            assert conn.execute(text("SELECT count(note) FROM forecasts")).scalar() == 0
        assert len(h.forecasts("m")) == 6


def test_scores_and_alerts_on_each_database(history_url):
    scores = pd.DataFrame(
        {"model_name": "m", "model_version": "1", "horizon": 0, "window": ["20", "live"]}
    ).assign(through=DAYS[3], days_live=4, matured=8, mae=1.0, naive_mae=2.0, mase=0.5)
    with ForecastHistory.open(history_url) as history:
        history.record_scores(scores)
        history.record_scores(scores.assign(mase=0.75))
        history.record_alert("m", "1", "mase", "20", "degraded", 1.4, "e1")
        back, states = history.scores("m", "1"), history.alert_states("m")
    assert back["mase"].tolist() == [0.75, 0.75] and back["crps"].isna().all()
    assert states == {("1", "mase", "20"): "degraded"}


def test_an_unreachable_postgresql_server_is_one_line_without_the_password():
    url = f"postgresql://alice:{SECRET}@127.0.0.1:{closed_port()}/forecasts"
    with pytest.raises(ForecastStoreError) as failure:
        ForecastHistory.open(url)
    line = one_line(failure.value)
    assert line.startswith("forecast store postgresql://***@127.0.0.1:") and "open failed" in line
    assert "pg-s3cret" not in line


# ---- through the CLI: `forecast` records its rows after writing the file


@pytest.fixture
def forecast_args(csv_dir, tiny_quantile_onnx, tmp_path) -> list[str]:
    data = ["--source", "csv", "--data-dir", str(csv_dir), "--tickers", "AAA", "BBB"]
    output = ["--output", str(tmp_path / "out" / "forecasts.csv")]
    return ["forecast", *data, "--model-uri", str(tiny_quantile_onnx[0]), *output, "--json"]


def test_forecast_records_each_run_and_a_rerun_day_is_idempotent(
    forecast_args, tmp_path, clis_on_prefect_server, monkeypatch
):
    monkeypatch.delenv(FORECAST_STORE_ENV)  # the default: relative to the working directory
    for _ in range(2):
        proc = run_cli(*forecast_args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["history"] == {"store": "sqlite:///forecasts/forecasts.db", "rows": 6}
    with ForecastHistory.open(f"sqlite:///{tmp_path}/forecasts/forecasts.db") as history:
        rows = history.forecasts("model", "file")  # a .onnx file: its name, version "file"
    assert len(rows) == 6 and set(rows["ticker"]) == {"AAA", "BBB"}


def test_a_locked_store_fails_forecast_with_one_line_after_the_file_is_written(
    forecast_args, tmp_path, clis_on_prefect_server
):
    import sqlite3

    path = tmp_path / "locked" / "forecasts.db"
    ForecastHistory.open(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer that does not let go
    try:
        proc = run_cli(*forecast_args, "--forecast-store", f"sqlite:///{path}", cwd=tmp_path)
    finally:
        holder.close()
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"lstm-pipeline forecast: failed: ForecastStoreError: forecast store sqlite:///{path}: "
        "recording forecasts failed: database is locked (another process is writing; waited "
        "5 s)"
    )
    assert len(pd.read_csv(tmp_path / "out" / "forecasts.csv")) == 6


def test_an_unreachable_store_fails_forecast_with_one_line_and_the_file_written(
    forecast_args, tmp_path, clis_on_prefect_server
):
    url = f"postgresql://alice:{SECRET}@127.0.0.1:{closed_port()}/forecasts"
    proc = run_cli(*forecast_args, "--forecast-store", url, cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "lstm-pipeline forecast: failed: ForecastStoreError: forecast store "
        "postgresql://***@127.0.0.1:"
    ), proc.stderr
    assert "pg-s3cret" not in proc.stdout + proc.stderr
    assert len(pd.read_csv(tmp_path / "out" / "forecasts.csv")) == 6


def test_a_store_password_reaches_no_output_and_no_prefect_record(
    forecast_args, tmp_path, postgres_url, clis_on_prefect_server
):
    secret_url = postgres_url.replace("postgres@", f"postgres:{SECRET.replace(' ', '%20')}@")
    proc = run_cli(*forecast_args, "--forecast-store", secret_url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    history = json.loads(proc.stdout.splitlines()[-1])["history"]
    assert history["rows"] == 6 and history["store"].startswith("postgresql://***@127.0.0.1")
    for secret in ("pg-s3cret", "s3cret%20word"):
        assert secret not in proc.stdout + proc.stderr
        assert secret not in prefect_records()
    with ForecastHistory.open(postgres_url) as store:
        assert len(store.forecasts("model", "file")) == 6
