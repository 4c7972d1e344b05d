"""The score flow's pure helpers: which tickers a run scores (--tickers narrows the history's;
naming none of them is one line of bad input), whether a store exists before it is opened, the
nothing-matured line and the rows of the JSON and the table artifact."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.scoring import _records, chosen_tickers, latest_scores, nothing_matured, store_exists
from lstm_pipeline.errors import InputError

SYMBOLS = st.sampled_from(["AAA", "BBB", "CCC", "SPY", "BRK-B", "7203.T", "aaa", "spy"])


@settings(max_examples=60, deadline=None)
@given(held=st.lists(SYMBOLS.map(str.upper), min_size=1), wanted=st.none() | st.lists(SYMBOLS))
def test_tickers_narrow_the_historys_or_name_none_of_them_in_one_line(held, wanted):
    forecasts = pd.DataFrame({"ticker": held})
    if wanted is None:
        assert chosen_tickers(forecasts, wanted) == sorted(set(held))
        return
    expected = sorted(set(held) & {t.upper() for t in wanted})
    if not expected:
        with pytest.raises(InputError) as failure:
            chosen_tickers(forecasts, wanted)
        message = str(failure.value)
        assert "\n" not in message and message.startswith(f"--tickers {' '.join(wanted)}: none")
        assert message.endswith(f"(it holds {', '.join(sorted(set(held)))})")
        return
    assert chosen_tickers(forecasts, wanted) == expected


def test_a_missing_sqlite_store_is_not_created_by_asking(tmp_path):
    url = f"sqlite:///{tmp_path}/history/forecasts.db"
    assert not store_exists(url)
    assert not (tmp_path / "history").exists()
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "forecasts.db").touch()
    assert store_exists(url)
    assert store_exists("postgresql://alice@127.0.0.1:1/forecasts")  # its server says
    assert store_exists("sqlite://")  # in memory


def test_nothing_matured_names_the_first_target_date_and_the_last_bar():
    forecasts = pd.DataFrame(
        {"ticker": ["AAA", "AAA"], "target_date": pd.to_datetime(["2024-01-03", "2024-01-02"])}
    )
    closes = {"AAA": pd.Series([1.0], index=pd.to_datetime(["2023-12-29"])), "BBB": pd.Series([])}
    assert nothing_matured(forecasts, closes) == (
        "nothing to score yet: 2 forecasts, none matured (first target date 2024-01-02, last "
        "bar 2023-12-29)"
    )


def test_the_latest_rows_are_json_with_dates_as_text_and_no_nan():
    days = pd.to_datetime(["2024-01-02", "2024-01-03"])
    scores = pd.DataFrame(
        {
            "model_name": "m",
            "model_version": "1",
            "horizon": [0, 0],
            "window": ["live", "live"],
            "through": days,
            "days_live": [1, 2],
            "matured": [3, 6],
            "mae": [0.5, 0.25],
            "naive_mae": [0.5, 0.5],
            "mase": [1.0, 0.5],
            "direction": [0.5, 0.5],
            "base_rate": [0.5, 0.5],
            "coverage_80": [np.nan, np.nan],
            "coverage_95": [np.nan, np.nan],
            "crps": [np.nan, np.nan],
        }
    )
    [row] = _records(latest_scores(scores))
    assert row["through"] == "2024-01-03" and row["days_live"] == 2 and row["mase"] == 0.5
    assert row["coverage_80"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in row.values())
    json.dumps(row, allow_nan=False)
