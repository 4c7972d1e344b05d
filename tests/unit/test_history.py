"""The forecast history on SQLite: what a re-run replaces, what is never deleted, migrations,
locks and URLs. (The same store tests on PostgreSQL: integration/test_history_stores.py.)"""

from __future__ import annotations

import sqlite3
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, inspect, text

from lstm_pipeline import history_schema
from lstm_pipeline.errors import ForecastStoreError, InputError, forget_credentials, one_line
from lstm_pipeline.history import ForecastHistory, model_name_of, record_forecast_run, store_url

DAYS = pd.bdate_range("2024-03-01", periods=6)


def forecast_rows(
    tickers: tuple[str, ...] = ("AAA", "BBB"),
    as_of: pd.Timestamp = DAYS[0],
    version: str = "1",
    horizon: int = 3,
    level: float = 100.0,
) -> pd.DataFrame:
    """predict.forecast_table's columns for `tickers` forecast from `as_of`."""
    rows = []
    for ticker in tickers:
        for h in range(1, horizon + 1):
            price = level + h
            bounds = [price - 2, price - 1, price + 1, price + 2]
            rows.append([ticker, as_of, h, as_of + pd.offsets.BDay(h), price, *bounds, level])
    columns = ["ticker", "as_of", "horizon", "target_date", "forecast"]
    columns += ["lower_95", "lower_80", "upper_80", "upper_95", "last_close"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(model_version=version, run_id=f"run-{version}", calendar="XNYS")


def open_store(tmp_path) -> ForecastHistory:
    return ForecastHistory.open(f"sqlite:///{tmp_path}/deep/folder/forecasts.db")


def test_a_new_store_gets_its_folder_typed_columns_and_the_latest_schema_version(tmp_path):
    with open_store(tmp_path) as history:
        found = inspect(history.engine)
        columns = {c["name"]: c["type"] for c in found.get_columns("forecasts")}
        pk = found.get_pk_constraint("forecasts")["constrained_columns"]
        indexes = {i["name"]: i["column_names"] for i in found.get_indexes("forecasts")}
        with history.engine.connect() as conn:
            version = history_schema.current_version(conn)
    assert (tmp_path / "deep/folder/forecasts.db").is_file()
    assert str(columns["as_of"]) == "DATE" and str(columns["target_date"]) == "DATE"
    assert str(columns["forecast"]) == "FLOAT" and str(columns["horizon"]) == "INTEGER"
    assert str(columns["model_version"]).startswith("VARCHAR")
    assert pk == ["model_name", "model_version", "ticker", "as_of", "horizon"]
    assert indexes["ix_forecasts_version_target"][:2] == ["model_name", "model_version"]
    assert version == len(history_schema.MIGRATIONS)


def test_rows_round_trip_with_dates_as_datetime64_and_missing_bounds_as_nan(tmp_path):
    table = forecast_rows().assign(lower_95=np.nan, input_drift=0.25)
    with open_store(tmp_path) as history:
        assert history.record_forecasts(table, "m") == len(table)
        back = history.forecasts("m")
    assert back["as_of"].dtype.kind == "M" and back["target_date"].dtype.kind == "M"
    assert back["lower_95"].isna().all() and (back["input_drift"] == 0.25).all()
    assert (back["model_name"] == "m").all()
    expected = table.sort_values(["ticker", "as_of", "horizon"]).reset_index(drop=True)
    for column in ("ticker", "horizon", "forecast", "upper_95", "model_version", "run_id"):
        assert back[column].tolist() == expected[column].tolist(), column
    assert back["target_date"].tolist() == expected["target_date"].tolist()


def test_a_rerun_day_replaces_its_rows_and_keeps_other_days_and_versions(tmp_path):
    with open_store(tmp_path) as history:
        history.record_forecasts(forecast_rows(as_of=DAYS[0]), "m")
        history.record_forecasts(forecast_rows(as_of=DAYS[1]), "m")
        history.record_forecasts(forecast_rows(as_of=DAYS[1], version="2"), "m")
        history.record_forecasts(forecast_rows(as_of=DAYS[1]), "other-model")
        before = history.forecasts("m")
        history.record_forecasts(forecast_rows(as_of=DAYS[1], level=200.0), "m")  # re-run
        history.record_forecasts(forecast_rows(as_of=DAYS[1], level=200.0), "m")  # again
        after = history.forecasts("m")
        assert len(history.forecasts("other-model")) == 6
        assert len(history.forecasts("m", "2")) == 6
    assert len(after) == len(before) == 18
    rerun = after[(after["as_of"] == DAYS[1]) & (after["model_version"] == "1")]
    assert (rerun["last_close"] == 200.0).all() and len(rerun) == 6
    untouched = after[(after["as_of"] == DAYS[0]) | (after["model_version"] == "2")]
    assert (untouched["last_close"] == 100.0).all() and len(untouched) == 12


def test_a_rerun_with_fewer_horizons_or_tickers_leaves_no_stale_row_of_its_day(tmp_path):
    with open_store(tmp_path) as history:
        history.record_forecasts(forecast_rows(horizon=5), "m")
        history.record_forecasts(forecast_rows(tickers=("AAA",), horizon=2), "m")
        back = history.forecasts("m")
    assert sorted(zip(back["ticker"], back["horizon"], strict=True)) == [
        ("AAA", 1),
        ("AAA", 2),
        *[("BBB", h) for h in range(1, 6)],  # BBB was not forecast again: kept
    ]


# A day's rows: (version, ticker, day index, horizon count, price level)
calls = st.lists(
    st.tuples(
        st.sampled_from(["1", "2"]),
        st.lists(st.sampled_from(["AAA", "BBB", "CCC"]), min_size=1, max_size=3, unique=True),
        st.integers(0, len(DAYS) - 1),
        st.integers(1, 3),
        st.integers(1, 50),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=calls)
def test_any_sequence_of_runs_leaves_exactly_the_last_run_of_each_day(tmp_path_factory, calls):
    """The store against a dict model: (version, ticker, day) -> the last run's rows."""
    expected: dict[tuple[str, str, pd.Timestamp], tuple[int, float]] = {}
    with open_store(tmp_path_factory.mktemp("store")) as history:
        for version, tickers, day, horizon, level in calls:
            table = forecast_rows(tuple(tickers), DAYS[day], version, horizon, float(level))
            history.record_forecasts(table, "m")
            expected |= {(version, t, DAYS[day]): (horizon, float(level)) for t in tickers}
        back = history.forecasts("m")
    found = {
        (version, ticker, day): (int(group["horizon"].max()), float(group["last_close"].iloc[0]))
        for (version, ticker, day), group in back.groupby(["model_version", "ticker", "as_of"])
    }
    assert found == expected
    assert len(back) == sum(horizon for horizon, _ in expected.values())


def add_note_column(conn: Connection) -> None:
    """A hypothetical version 2: a new nullable column."""
    conn.execute(text("ALTER TABLE forecasts ADD COLUMN note VARCHAR(50)"))


def test_a_migration_step_keeps_every_row_and_moves_the_version_once(tmp_path):
    url = f"sqlite:///{tmp_path}/forecasts.db"
    with ForecastHistory.open(url) as version_1:
        version_1.record_forecasts(forecast_rows(), "m")
    steps = (*history_schema.MIGRATIONS, add_note_column)
    for _ in range(2):  # the second open finds version 2 and runs nothing
        with ForecastHistory.open(url, steps) as version_2:
            with version_2.engine.connect() as conn:
                assert history_schema.current_version(conn) == 2
                notes = conn.execute(text("SELECT note FROM forecasts")).scalars().all()
            assert len(version_2.forecasts("m")) == 6 and notes == [None] * 6
    with pytest.raises(ForecastStoreError, match="schema version 2 is newer than this code's 1"):
        ForecastHistory.open(url)


def test_a_failing_migration_step_changes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/forecasts.db"
    with ForecastHistory.open(url) as history:
        history.record_forecasts(forecast_rows(), "m")

    def half_done(conn: Connection) -> None:
        add_note_column(conn)
        conn.execute(text("UPDATE no_such_table SET x = 1"))  # fails inside the step

    with pytest.raises(ForecastStoreError, match="open failed: no such table: no_such_table"):
        ForecastHistory.open(url, (*history_schema.MIGRATIONS, half_done))
    with ForecastHistory.open(url) as history, history.engine.connect() as conn:
        columns = [c["name"] for c in inspect(conn).get_columns("forecasts")]
        assert history_schema.current_version(conn) == 1 and "note" not in columns
        assert len(history.forecasts("m")) == 6


def test_a_locked_store_waits_then_fails_with_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr("lstm_pipeline.history.BUSY_TIMEOUT_S", 0.5)
    path = tmp_path / "forecasts.db"
    with ForecastHistory.open(f"sqlite:///{path}") as history:
        history.record_forecasts(forecast_rows(), "m")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's write, not yet committed
        try:
            assert len(history.forecasts("m")) == 6  # WAL: readers are not blocked
            with pytest.raises(ForecastStoreError) as failure:
                history.record_forecasts(forecast_rows(level=5.0), "m")
        finally:
            holder.close()
        assert (history.forecasts("m")["last_close"] == 100.0).all()  # nothing half-written
    line = one_line(failure.value)
    assert line == (
        f"forecast store sqlite:///{path}: recording forecasts failed: database is locked "
        "(another process is writing; waited 0.5 s)"
    )


def test_scores_are_replaced_on_their_key_and_alert_states_are_the_last_recorded(tmp_path):
    def scores(through: date, mase: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "model_name": "m",
                "model_version": "1",
                "horizon": [0, 1],
                "window": ["20", "20"],
                "through": through,
                "days_live": 20,
                "matured": 40,
                "mae": 1.0,
                "naive_mae": 1.0,
                "mase": mase,
                "direction": 0.5,
                "base_rate": 0.5,
                "coverage_80": np.nan,
                "coverage_95": np.nan,
                "crps": np.nan,
            }
        )

    with open_store(tmp_path) as history:
        history.record_scores(scores(date(2024, 3, 1), 1.0))
        history.record_scores(scores(date(2024, 3, 4), 1.0))
        assert history.record_scores(scores(date(2024, 3, 4), 1.5)) == 2
        back = history.scores("m")
        history.record_alert("m", "1", "mase", "60", "degraded", 1.3, "event-1")
        history.record_alert("m", "1", "mase", "60", "ok", 0.9, "event-2")
        history.record_alert("m", "1", "coverage_80", "20", "degraded", float("nan"), None)
        states = history.alert_states("m")
        assert history.alert_states("other") == {}
    assert len(back) == 4 and back["through"].dtype.kind == "M"
    assert back.loc[back["through"] == pd.Timestamp("2024-03-04"), "mase"].tolist() == [1.5, 1.5]
    assert back["coverage_80"].isna().all() and back["matured"].dtype == np.int64
    assert states == {("1", "mase", "60"): "ok", ("1", "coverage_80", "20"): "degraded"}


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("models:/lstm-forecaster@champion", "lstm-forecaster"),
        ("models:/my model/7", "my model"),
        ("/tmp/x/model.onnx", "model"),
    ],
)
def test_the_model_name_of_a_registry_uri_or_file(uri, name):
    assert model_name_of(uri) == name


def test_the_store_url_is_the_option_then_the_variable_then_the_default(monkeypatch):
    monkeypatch.delenv("LSTM_PIPELINE_FORECAST_STORE", raising=False)
    assert store_url(None) == "sqlite:///forecasts/forecasts.db"
    monkeypatch.setenv("LSTM_PIPELINE_FORECAST_STORE", "sqlite:///from-env.db")
    assert store_url(None) == "sqlite:///from-env.db"
    assert store_url("sqlite:///given.db") == "sqlite:///given.db"


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://u:hunter22@h/db", "sqlite+nodriver:///x"])
def test_a_url_sqlalchemy_cannot_use_is_bad_input_without_its_password(url):
    with pytest.raises(InputError) as failure:
        ForecastHistory.open(url)
    assert "hunter22" not in one_line(failure.value)
    assert one_line(failure.value).startswith("forecast store ")


def test_a_store_whose_folder_cannot_be_made_fails_with_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ForecastStoreError, match=r"^forecast store sqlite:///.*: open failed"):
        ForecastHistory.open(f"sqlite:///{tmp_path}/file/sub/forecasts.db")


def test_record_forecast_run_names_the_model_and_the_scrubbed_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LSTM_PIPELINE_FORECAST_STORE", raising=False)
    try:
        summary = record_forecast_run(forecast_rows(), "models:/lstm-forecaster@champion")
    finally:
        forget_credentials()
    assert summary == {"store": "sqlite:///forecasts/forecasts.db", "rows": 6}
    with ForecastHistory.open(f"sqlite:///{tmp_path}/forecasts/forecasts.db") as history:
        assert len(history.forecasts("lstm-forecaster", "1")) == 6
