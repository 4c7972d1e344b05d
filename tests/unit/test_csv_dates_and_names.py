"""What a csv file's dates and name mean: dates with UTC offsets are the exchange dates written,
every date is a naive midnight, two rows of one day repeat it, compact dates parse quietly; file
names map to tickers once, case-insensitively, skipping what names no ticker."""

from __future__ import annotations

import logging
import warnings
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_pipeline import data
from lstm_pipeline.config import DataConfig, build_config
from lstm_pipeline.errors import DataValidationError, InputError
from lstm_pipeline.validate import validate_prices
from tests.synthetic import make_prices
from tests.unit.test_validate import BAD, CORPUS_CFG

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ZONES = ["America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney", "Asia/Kolkata"]


def csv_cfg(folder: Path, **update) -> DataConfig:
    return DataConfig(source="csv", data_dir=str(folder), **update)


def write_dates(folder: Path, dates: list[str], ticker: str = "AAA") -> DataConfig:
    folder.mkdir(parents=True, exist_ok=True)
    frame = make_prices(len(dates)).assign(Date=dates)
    frame.to_csv(folder / f"{ticker}.csv", index=False)
    return csv_cfg(folder)


def test_offsets_that_change_at_daylight_saving_are_read_as_exchange_dates():
    prices = data.load_prices("TZDST", CORPUS_CFG)
    assert prices.index.tz is None
    assert {pd.Timestamp("2024-03-08"), pd.Timestamp("2024-03-11")} <= set(prices.index)
    assert (prices.index == prices.index.normalize()).all()


@SETTINGS
@given(
    zone=st.sampled_from(ZONES),
    start=st.dates(date(2000, 1, 1), date(2030, 1, 1)),
    separator=st.sampled_from([" ", "T"]),
    colon=st.booleans(),
    hour=st.sampled_from([0, 0, 9, 16]),
)
def test_dates_with_any_offset_are_the_calendar_dates_written(
    tmp_path_factory, zone, start, separator, colon, hour
):
    local = pd.bdate_range(start, periods=30).tz_localize(zone) + pd.Timedelta(hours=hour)
    text = [t.isoformat(sep=separator) for t in local]
    if not colon:  # +09:00 and +0900 are both ISO 8601
        text = [t[:-3] + t[-2:] for t in text]
    cfg = write_dates(tmp_path_factory.mktemp("tz"), text)
    cfg = cfg.model_copy(update={"start": local[5].date()})  # --start on an aware file
    prices = data.load_prices("AAA", cfg)
    assert prices.index.tz is None
    assert list(prices.index) == [pd.Timestamp(t.date()) for t in local[5:]]


def test_utc_offsets_with_start_and_aware_beside_naive_tickers(tmp_path: Path):
    days = pd.bdate_range("2024-01-01", periods=30)
    write_dates(tmp_path, [f"{d.date()}T00:00:00Z" for d in days], "UTC")
    write_dates(tmp_path, [f"{d.date()}" for d in days], "NAIVE")
    cfg = csv_cfg(tmp_path, start=date(2024, 1, 10))
    aware, naive = data.load_prices("UTC", cfg), data.load_prices("NAIVE", cfg)
    assert aware.index.equals(naive.index) and aware.index.tz is None
    mixed = [f"{d.date()} 00:00:00-05:00" if i % 2 else f"{d.date()}" for i, d in enumerate(days)]
    write_dates(tmp_path, mixed, "MIXED")
    assert data.load_prices("MIXED", cfg).index.equals(naive.index)


def test_an_aware_cache_index_is_made_naive_keeping_its_wall_clock():
    frame = make_prices(30).set_index("Date")
    frame.index = pd.DatetimeIndex(frame.index).tz_localize("Asia/Tokyo")
    checked = validate_prices(frame, "ZZZ", "cache x")
    assert checked.index.tz is None and checked.index[0] == pd.Timestamp("2020-01-01")


@SETTINGS
@given(
    row=st.integers(1, 28),
    times=st.lists(st.times(), min_size=2, max_size=2),
    offset=st.sampled_from(["", "-05:00", "+09:00", "Z"]),
)
def test_two_rows_on_one_calendar_day_are_a_repeated_date(tmp_path_factory, row, times, offset):
    days = [f"{d.date()}" for d in pd.bdate_range("2020-01-01", periods=30)]
    days[row - 1 : row + 1] = [f"{days[row]} {t.isoformat()}{offset}" for t in times]
    cfg = write_dates(tmp_path_factory.mktemp("sameday"), days)
    with pytest.raises(DataValidationError, match=f"AAA: file .*: date {days[row][:10]} repeats"):
        data.load_prices("AAA", cfg)


def test_the_corpus_file_with_two_rows_on_one_day_names_it():
    with pytest.raises(DataValidationError, match="SAMEDAY.csv: date 2020-01-02 repeats$"):
        data.load_prices("SAMEDAY", CORPUS_CFG)


def test_compact_dates_parse_without_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prices = data.load_prices("COMPACT", CORPUS_CFG)
    assert caught == []
    assert prices.index[0] == pd.Timestamp("2020-01-01") and len(prices) == 12


def write_prices(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    make_prices(30).to_csv(folder / name, index=False)
    return folder / name


@SETTINGS
@given(
    ticker=st.sampled_from(["AAPL", "BRK-B", "RDS.A", "EURUSD=X", "^GSPC"]),
    cases=st.lists(st.booleans(), min_size=12, max_size=12),
    suffix=st.sampled_from([".csv", ".CSV", ".Csv"]),
)
def test_file_names_map_to_tickers_case_insensitively_in_scan_and_lookup(
    tmp_path_factory, ticker, cases, suffix
):
    name = (
        "".join(
            c.lower() if lower else c for c, lower in zip(ticker, cases[: len(ticker)], strict=True)
        )
        + suffix
    )
    folder = tmp_path_factory.mktemp("names")
    path = write_prices(folder, name)
    cfg = build_config(data__source="csv", data__data_dir=str(folder))
    assert cfg.data.tickers == (ticker,)
    prices = data.load_prices(ticker.lower(), cfg.data)
    assert prices.attrs["origin"] == f"file {path}"


def test_files_that_name_no_ticker_are_skipped_with_one_warning(tmp_path: Path, caplog):
    write_prices(tmp_path, "spy.csv")
    (tmp_path / "._SPY.csv").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (tmp_path / "._AAPL.csv").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "notes.txt").write_text("not prices")
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        cfg = build_config(data__source="csv", data__data_dir=str(tmp_path))
        data.load_prices("SPY", cfg.data)
    assert cfg.data.tickers == ("SPY",)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning == f"{tmp_path}: skipped ._AAPL.csv, ._SPY.csv: not TICKER.csv file names"


def test_a_metadata_file_is_never_read_for_its_ticker(tmp_path: Path):
    (tmp_path / "._SPY.csv").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(InputError, match=f"SPY: file {tmp_path}/SPY.csv not found"):
        data.load_prices("SPY", csv_cfg(tmp_path))


@pytest.mark.parametrize("names", [("AAPL.csv", "aapl.csv"), ("Aapl.CSV", "aapl.csv")])
def test_two_files_naming_one_ticker_are_bad_input_naming_both(tmp_path: Path, names):
    paths = sorted(write_prices(tmp_path, name) for name in names)
    both = f"AAPL: {paths[0]} and {paths[1]} name the same ticker: keep one"
    with pytest.raises(InputError) as scan:
        build_config(data__source="csv", data__data_dir=str(tmp_path))
    assert str(scan.value) == both
    with pytest.raises(InputError) as lookup:
        data.load_prices("AAPL", csv_cfg(tmp_path))
    assert str(lookup.value) == both


def test_the_corpus_still_names_each_file_by_its_ticker():
    assert data.load_prices("GAP", CORPUS_CFG).attrs["origin"] == f"file {BAD}/GAP.csv"


SKIPPED = ["._T.csv", "A\nB.csv", "\tAAA.csv", " AAA.csv", "AAA\r.csv", "a b.csv", "x\x1b.csv"]


@SETTINGS
@given(names=st.lists(st.sampled_from(SKIPPED), min_size=1, max_size=3, unique=True))
def test_a_folder_of_skipped_files_is_one_error_line_saying_what_it_skipped(
    tmp_path_factory, names, caplog
):
    folder = tmp_path_factory.mktemp("skipped")
    for name in names:
        (folder / name).write_bytes(b"\x00\x05\x16\x07Mac OS X")
    shown = ", ".join(n if n.isprintable() else repr(n) for n in sorted(names))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        with pytest.raises(InputError) as err:
            build_config(data__source="csv", data__data_dir=str(folder))
    assert str(err.value) == (
        f"data_dir {folder} holds no TICKER.csv files (skipped {shown}: not ticker names):"
        " add some or pass tickers"
    )
    assert caplog.records == []  # the error says it: no warning line before it


@pytest.mark.parametrize("name", ["A\nB.csv", "x\x1b.csv", "\nAAA.csv", "AAA\t.csv"])
def test_a_non_printable_file_name_is_skipped_quoted_on_one_line(tmp_path: Path, name, caplog):
    write_prices(tmp_path, "spy.csv")
    (tmp_path / name).write_bytes(b"\x00")
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        cfg = build_config(data__source="csv", data__data_dir=str(tmp_path))
    assert cfg.data.tickers == ("SPY",)  # `\nAAA.csv` is no AAA file: its path would not print
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning == f"{tmp_path}: skipped {name!r}: not TICKER.csv file names"
    assert warning.isprintable()
