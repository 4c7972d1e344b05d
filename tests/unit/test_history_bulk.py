"""The forecast history's bulk path (history_bulk.py): rows go to the driver as executemany of
plain tuples in chunks, come back chunk by chunk into the same frame whatever the chunk size,
and the SQLite store runs with the pragmas its speed and safety rely on. No timings asserted
(benchmarks/live_scoring.py measures them)."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from lstm_pipeline import history_bulk
from lstm_pipeline.history import ForecastHistory

DAYS = pd.bdate_range("2024-03-01", periods=8)
# text a driver must carry as is: quotes, a semicolon, accents, a percent sign (psycopg's marker)
TEXT = st.text(alphabet=string.ascii_letters + "'\";% éß-", min_size=1, max_size=6)
OPTIONAL = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64)


def forecast_table(keys: list[tuple[str, int, int]], draw_value) -> pd.DataFrame:
    """predict.forecast_table's columns (plus input_drift) for each (ticker, day, horizon)."""
    rows = []
    for ticker, day, horizon in keys:
        as_of = DAYS[day]
        bounds = [draw_value(OPTIONAL) for _ in range(4)]
        rows.append(
            {
                "ticker": ticker,
                "as_of": as_of,
                "horizon": horizon,
                "target_date": as_of + pd.offsets.BDay(horizon),
                "forecast": draw_value(st.floats(-1e6, 1e6)),
                **dict(zip(("lower_95", "lower_80", "upper_80", "upper_95"), bounds, strict=True)),
                "last_close": draw_value(st.floats(0.01, 1e6)),
                "model_version": "1",
                "run_id": draw_value(TEXT),
                "calendar": draw_value(st.none() | TEXT),
                "input_drift": draw_value(OPTIONAL),
            }
        )
    return pd.DataFrame(rows)


def expected(table: pd.DataFrame) -> pd.DataFrame:
    """What the store gives back for `table`: its columns in the store's order, sorted by key."""
    back = table.assign(model_name="m").sort_values(["ticker", "as_of", "horizon"])
    for column in ("lower_95", "lower_80", "upper_80", "upper_95", "input_drift"):
        back[column] = back[column].astype("float64")
    return back.reset_index(drop=True)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.sets(
        st.tuples(TEXT, st.integers(0, len(DAYS) - 1), st.integers(1, 3)), min_size=1, max_size=30
    ),
    chunk=st.integers(1, 12),
    data=st.data(),
)
def test_rows_round_trip_exactly_whatever_the_chunk_size(
    tmp_path_factory, monkeypatch, keys, chunk, data
):
    monkeypatch.setattr(history_bulk, "CHUNK_ROWS", chunk)
    table = forecast_table(sorted(keys), data.draw)
    path = tmp_path_factory.mktemp("bulk") / "forecasts.db"
    with ForecastHistory.open(f"sqlite:///{path}") as history:
        assert history.record_forecasts(table, "m") == len(table)
        assert history.record_forecasts(table, "m") == len(table)  # a re-run replaces them all
        back = history.forecasts("m")
    want = expected(table)
    pd.testing.assert_frame_equal(back[want.columns], want, check_dtype=False, check_exact=True)
    assert back["as_of"].dtype.kind == "M" and back["horizon"].dtype == np.int64
    assert back["lower_95"].dtype == np.float64 and back["ticker"].dtype == "str"


def test_rows_reach_the_driver_as_one_executemany_of_tuples_per_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(history_bulk, "CHUNK_ROWS", 50)
    table = pd.DataFrame(
        {
            "ticker": [f"T{i:03d}" for i in range(40) for _ in range(3)],
            "as_of": DAYS[0],
            "horizon": [1, 2, 3] * 40,
            "target_date": DAYS[1],
            "forecast": 1.0,
            "last_close": 1.0,
            "model_version": "1",
            "run_id": "r",
        }
    )
    sent: list[tuple[str, bool, bool, int]] = []
    with ForecastHistory.open(f"sqlite:///{tmp_path}/forecasts.db") as history:

        @event.listens_for(history.engine, "before_cursor_execute")
        def _seen(conn, cursor, statement, parameters, context, executemany):
            if statement.split()[0] in ("INSERT", "DELETE"):
                plain = all(type(row) is tuple for row in parameters)
                # no compiled statement: SQLAlchemy bound and processed no row one by one
                sent.append(
                    (
                        statement.split()[0],
                        executemany,
                        plain and not context.compiled,
                        len(parameters),
                    )
                )

        history.record_forecasts(table, "m")
        assert len(history.forecasts("m")) == len(table)
    # 40 keys (ticker, as_of) deleted in one call; 120 rows inserted in chunks of 50
    assert sent == [
        ("DELETE", True, True, 40),
        ("INSERT", True, True, 50),
        ("INSERT", True, True, 50),
        ("INSERT", True, True, 20),
    ]


@pytest.mark.parametrize(
    ("pragma", "value"),
    [
        ("journal_mode", "wal"),
        ("synchronous", 1),  # NORMAL: safe in WAL mode against a killed process
        ("journal_size_limit", 64 * 2**20),
        ("cache_size", -64 * 2**10),
    ],
)
def test_every_sqlite_connection_gets_the_stores_pragmas(tmp_path, pragma, value):
    with ForecastHistory.open(f"sqlite:///{tmp_path}/forecasts.db") as history:
        with history.engine.connect() as conn:
            assert conn.exec_driver_sql(f"PRAGMA {pragma}").scalar() == value
