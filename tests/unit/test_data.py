from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline import data
from lstm_pipeline.config import SAMPLE_TICKERS, DataConfig
from lstm_pipeline.errors import DataValidationError, InputError
from tests.conftest import make_prices


def test_sample_source_has_six_real_tickers_adjusted_for_dividends():
    cfg = DataConfig(source="sample")
    for ticker in SAMPLE_TICKERS:
        prices = data.load_prices(ticker, cfg)
        assert list(prices.columns) == list(data.FEATURES)
        assert prices.index[0] >= pd.Timestamp("2010-01-01") and len(prices) > 3000
    raw, _ = data.read_sample("SPY")
    adjusted = data.load_prices("SPY", cfg)
    np.testing.assert_allclose(adjusted["Close"], raw["Adj Close"], rtol=1e-12)


def test_date_range_is_inclusive_at_both_ends():
    cfg = DataConfig(source="sample", start=date(2020, 3, 2), end=date(2020, 3, 31))
    prices = data.load_prices("AAPL", cfg)
    assert prices.index[0] == pd.Timestamp("2020-03-02")
    assert prices.index[-1] == pd.Timestamp("2020-03-31")


def test_csv_source_reads_yfinance_layout_with_or_without_adj_close(tmp_path: Path):
    frame = make_prices(50)
    frame.to_csv(tmp_path / "WITH.csv", index=False)
    frame.drop(columns="Adj Close").to_csv(tmp_path / "WITHOUT.csv", index=False)
    cfg = DataConfig(source="csv", data_dir=str(tmp_path))
    with_adj, without = data.load_prices("with", cfg), data.load_prices("WITHOUT", cfg)
    np.testing.assert_allclose(with_adj["Close"], frame["Adj Close"])
    np.testing.assert_allclose(without["Close"], frame["Close"])
    np.testing.assert_allclose(with_adj["Open"] / without["Open"], 0.98)  # OHLC share the factor


BAD_FILES = {
    "duplicate date": (
        lambda f: pd.concat([f, f.iloc[[3]]]).sort_index(kind="stable"),
        "date 2020-01-06 repeats",
    ),
    "unsorted": (lambda f: f.iloc[[0, 2, 1, *range(3, len(f))]], "dates not increasing at"),
    "zero price": (
        lambda f: f.assign(Low=f["Low"].where(f.index != 5, 0.0)),
        "non-positive price on 2020-01-08",
    ),
    "negative price": (
        lambda f: f.assign(Open=f["Open"].where(f.index != 2, -1.0)),
        "non-positive price on 2020-01-03",
    ),
    "partial NaN": (
        lambda f: f.assign(High=f["High"].where(f.index != 9, np.nan)),
        "missing or non-numeric value on 2020-01-14",
    ),
    "missing column": (lambda f: f.drop(columns="Volume"), r"missing column\(s\) Volume"),
    "header only": (lambda f: f.iloc[:0], "no rows|only 0 row"),
    "bad date": (
        lambda f: f.assign(Date=f["Date"].where(f.index != 4, "yesterday")),
        "row 6: bad date 'yesterday'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_csv_file_is_rejected_naming_ticker_file_and_where(tmp_path: Path, case: str):
    corrupt, message = BAD_FILES[case]
    corrupt(make_prices(40)).to_csv(tmp_path / "BAD.csv", index=False)
    with pytest.raises(DataValidationError, match=message) as err:
        data.load_prices("BAD", DataConfig(source="csv", data_dir=str(tmp_path)))
    assert "BAD" in str(err.value) and "BAD.csv" in str(err.value)
    assert "\n" not in str(err.value)


def test_garbage_file_and_missing_file_give_input_errors(tmp_path: Path):
    (tmp_path / "JUNK.csv").write_bytes(b"\x00\xff\xfe garbage \x89PNG\r\n")
    cfg = DataConfig(source="csv", data_dir=str(tmp_path))
    with pytest.raises(InputError, match="JUNK.*JUNK.csv"):
        data.load_prices("JUNK", cfg)
    with pytest.raises(InputError, match="NOPE: file .*NOPE.csv not found"):
        data.load_prices("NOPE", cfg)


@pytest.mark.parametrize("bad", ["../x", "A B", "", "a/b", "X" * 16, "$$$"])
def test_invalid_tickers_never_reach_a_path(bad: str):
    with pytest.raises(InputError, match="invalid ticker"):
        data.validate_ticker(bad)


@pytest.mark.parametrize("good", ["AAPL", "brk-b", "^GSPC", "EURUSD=X", "RDS.A"])
def test_valid_tickers_are_upper_cased(good: str):
    assert data.validate_ticker(good) == good.upper()


def yfinance_response(n: int = 30) -> pd.DataFrame:
    """What yf.download(..., auto_adjust=False, multi_level_index=False) returns in 1.7."""
    frame = make_prices(n).set_index("Date")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index), name="Date")
    return frame[["Adj Close", "Close", "High", "Low", "Open", "Volume"]]


def test_yfinance_source_calls_download_with_explicit_options(monkeypatch):
    import yfinance as yf

    calls = []

    def fake_download(ticker, **kwargs):
        calls.append((ticker, kwargs))
        return yfinance_response()

    monkeypatch.setattr(yf, "download", fake_download)
    cfg = DataConfig(source="yfinance", start=date(2020, 1, 1), end=date(2020, 2, 11))
    prices = data.load_prices("msft", cfg)
    ((ticker, kwargs),) = calls
    assert ticker == "MSFT"
    assert kwargs["auto_adjust"] is False and kwargs["multi_level_index"] is False
    assert kwargs["end"] == "2020-02-12"  # yfinance's end is exclusive, ours inclusive
    assert prices.index[-1] == pd.Timestamp("2020-02-11")
    np.testing.assert_allclose(prices["Close"], yfinance_response()["Adj Close"].iloc[:30])


def test_yfinance_empty_frame_is_a_failure_not_data(monkeypatch):
    import yfinance as yf

    monkeypatch.setattr(yf, "download", lambda ticker, **kw: pd.DataFrame())
    with pytest.raises(InputError, match="ZZZZ: yfinance returned no data"):
        data.load_prices("ZZZZ", DataConfig(source="yfinance"))


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path: Path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def crash(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        data.write_atomic(target, crash)
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


def test_cache_round_trip(tmp_path: Path):
    prices = data.load_prices("GOOG", DataConfig(source="sample"))
    path = data.save_cache(prices, tmp_path, "GOOG")
    assert path == tmp_path / "GOOG.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), prices, check_freq=False)
