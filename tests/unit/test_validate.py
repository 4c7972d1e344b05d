"""Every validation rule, on the committed corpus of bad files in tests/data/bad and on frames."""

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_pipeline import data
from lstm_pipeline.config import SAMPLE_TICKERS, DataConfig
from lstm_pipeline.errors import DataValidationError, InputError
from lstm_pipeline.validate import (
    ADJ_CLOSE,
    FEATURES,
    row_problems,
    rows_all_sound,
    validate_prices,
)
from tests.synthetic import make_prices

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
CORPUS_CFG = DataConfig(source="csv", data_dir=str(BAD))

# file -> what the one-line error says after "TICKER: file PATH"
ERRORS = {
    "DUPDATE": ": date 2020-01-06 repeats",
    "UNSORTED": ": dates not increasing at 2020-01-03 \\(after 2020-01-06\\)",
    "NEGPRICE": ": non-positive Open -1 on 2020-01-03",
    "ZEROPRICE": ": non-positive Close 0 on 2020-01-08",
    "HIGHLOW": ": High [0-9.]+ below Low [0-9.]+ on 2020-01-09",
    "HIGHBELOW": ": High [0-9.]+ below max\\(Open, Close\\) [0-9.]+ on 2020-01-10",
    "LOWABOVE": ": Low [0-9.]+ above min\\(Open, Close\\) [0-9.]+ on 2020-01-13",
    "NEGVOL": ": negative Volume -5 on 2020-01-07",
    "NOVOLUME": ": missing column\\(s\\) Volume",
    "NODATE": ": no Date column",
    "HEADER": ": only 0 row\\(s\\) with prices",
    "PARTNAN": ": missing or non-numeric High on 2020-01-14",
    "TEXTPRICE": ": missing or non-numeric Close on 2020-01-06",
    "ADJNAN": ": missing or non-numeric Adj Close on 2020-01-15",
    "BADDATE": ": bad date 'yesterday' in row 6",
    "GARBAGE": ": no Date column",
    "BINARY": " is not a readable CSV",
    "EMPTY": " is not a readable CSV \\(No columns to parse from file\\)",
    "INFPRICE": ": non-finite Close inf on 2020-01-08",
    "INFVOL": ": non-finite Volume -inf on 2020-01-09",
    "HUGEPRICE": ": High 1e\\+300 out of range 1e-12 to 1e\\+15 on 2020-01-07",
    "F32VOL": ": Volume 1e\\+39 out of range 0 to 1e\\+18 on 2020-01-10",
    "ADJHUGE": ": High [0-9.e+]+ after adjustment by Adj Close / Close out of range 1e-12 to "
    "1e\\+15 on 2020-01-13",
    "SAMEDAY": ": date 2020-01-02 repeats",
    "DUPCLOSE": ": column Close repeats$",
    "BOOLVOL": ": missing or non-numeric Volume on 2020-01-01$",
}


@pytest.mark.parametrize("ticker", sorted(ERRORS))
def test_each_bad_file_is_one_line_naming_ticker_file_and_what(ticker: str):
    with pytest.raises(DataValidationError) as err:
        data.load_prices(ticker, CORPUS_CFG)
    message = str(err.value)
    assert message.startswith(f"{ticker}: file {BAD / ticker}.csv")
    assert "\n" not in message
    assert re.search(ERRORS[ticker], message), message


def test_the_corpus_has_a_case_for_every_file():
    assert {p.stem for p in BAD.glob("*.csv")} == set(ERRORS) | {
        "SHORT",
        "CLOSED",
        "GAP",
        "ZEROVOL",
        "TZDST",
        "COMPACT",
    }


def test_too_short_series_says_how_many_rows_are_needed():
    with pytest.raises(DataValidationError) as err:
        data.load_prices("SHORT", CORPUS_CFG, min_rows=39, purpose="train/val/test windows")
    assert str(err.value) == (
        f"SHORT: file {BAD}/SHORT.csv: 12 rows from 2020-01-01 to 2020-01-16,"
        " but 39 are needed for train/val/test windows"
    )


def test_rows_without_any_price_are_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        prices = data.load_prices("CLOSED", CORPUS_CFG)
    assert len(prices) == 42 and not prices.isna().any().any()
    assert pd.Timestamp("2020-01-15") not in prices.index
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"CLOSED: file {BAD}/CLOSED.csv: dropped 3 row(s) without any price")
    assert "the first on 2020-01-15" in warning


def test_long_gaps_are_a_warning_naming_the_longest(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        prices = data.load_prices("GAP", CORPUS_CFG)
    assert len(prices) == 45
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "1 gap(s) longer than 10 days; the longest 22 days, before 2020-02-19" in warning


def test_gap_limit_is_configurable(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        data.load_prices("GAP", CORPUS_CFG.model_copy(update={"max_gap_days": 30}))
    assert caplog.records == []


def test_zero_volume_runs_are_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        data.load_prices("ZEROVOL", CORPUS_CFG)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "1 run(s) of 3+ zero-volume bars; the longest 4 bars from 2020-01-17" in warning


def bars(n: int = 30) -> pd.DataFrame:
    frame = make_prices(n).set_index("Date")
    frame.index = pd.to_datetime(frame.index)
    return frame


def test_a_zero_volume_bar_shorter_than_the_run_limit_is_fine(caplog):
    frame = bars()
    frame.loc[frame.index[[5, 6, 20]], "Volume"] = 0
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        validate_prices(frame, "ZZZ", "test", zero_volume_bars=3)
    assert caplog.records == []


def test_high_and_low_tolerate_float_rounding_but_not_more():
    frame = bars()
    top = frame[["Open", "Close"]].max(axis=1)
    rounded = frame.assign(High=top.where(frame.index != frame.index[3], top * (1 - 1e-9)))
    assert len(validate_prices(rounded, "ZZZ", "test")) == 30
    broken = frame.assign(High=top.where(frame.index != frame.index[3], top * (1 - 1e-4)))
    with pytest.raises(DataValidationError, match="ZZZ: test: High .* below max.* on 2020-01-06"):
        validate_prices(broken, "ZZZ", "test")


def test_validation_reports_the_first_bad_date_of_the_first_rule():
    frame = bars()
    frame.loc[frame.index[9], "Volume"] = -1
    frame.loc[frame.index[20], "Close"] = np.nan
    with pytest.raises(DataValidationError, match="missing or non-numeric Close on 2020-01-29"):
        validate_prices(frame, "ZZZ", "test")


def test_the_six_sample_tickers_pass_every_rule(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        for ticker in SAMPLE_TICKERS:
            prices = data.load_prices(ticker, DataConfig(source="sample"))
            high_ok = prices["High"] >= prices[["Open", "Close"]].max(axis=1) * (1 - 1e-6)
            assert high_ok.all(), ticker  # still true after the Adj Close adjustment
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("bad", ["../x", "A B", "", "a/b", "X" * 16, "$$$", "..", "A\nB"])
def test_invalid_tickers_never_reach_a_path(bad: str, tmp_path: Path):
    cfg = DataConfig(source="csv", data_dir=str(tmp_path))
    with pytest.raises(InputError, match="invalid ticker"):
        data.load_prices(bad, cfg)
    with pytest.raises(InputError, match="invalid ticker"):
        data.fill_cache(bad, cfg)
    with pytest.raises(ValueError, match="invalid ticker"):
        DataConfig(tickers=(bad,))
    assert list(tmp_path.iterdir()) == []


def test_config_upper_cases_and_dedupes_tickers():
    assert DataConfig(tickers=("aapl", "MSFT", "AAPL")).tickers == ("AAPL", "MSFT")


_CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -1.0, 1e-13, 1e-12, 1e15, 2e15, 1e18, 2e18, 10.0, 10.000001]),
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(_CELL, min_size=6, max_size=6), min_size=1, max_size=6))
def test_the_fast_all_sound_check_agrees_with_every_rule(rows):
    prices = pd.DataFrame(
        rows, columns=[*FEATURES, ADJ_CLOSE], index=pd.date_range("2024-01-01", periods=len(rows))
    )
    flagged = any(bad.any() for bad, _ in row_problems(prices))
    assert rows_all_sound(prices) is not flagged
    assert rows_all_sound(prices.drop(columns=ADJ_CLOSE)) is not any(
        bad.any() for bad, _ in row_problems(prices.drop(columns=ADJ_CLOSE))
    )
