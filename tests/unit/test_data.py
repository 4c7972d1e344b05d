from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline import data
from lstm_pipeline.config import SAMPLE_TICKERS, DataConfig
from lstm_pipeline.errors import InputError
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


def test_missing_file_is_an_input_error_naming_it(tmp_path: Path):
    with pytest.raises(InputError, match="NOPE: file .*NOPE.csv not found"):
        data.load_prices("NOPE", DataConfig(source="csv", data_dir=str(tmp_path)))


@pytest.mark.parametrize("good", ["AAPL", "brk-b", "^GSPC", "EURUSD=X", "RDS.A"])
def test_valid_tickers_are_upper_cased(good: str):
    assert data.validate_ticker(good) == good.upper()


def test_load_many_keeps_each_failure_with_its_ticker_and_the_last_rows_asked_for(csv_dir):
    (csv_dir / "BAD.csv").write_text("Date,Open,High,Low,Close,Volume\n2020-01-01,1,2,0.5,1,-5\n")
    cfg = DataConfig(source="csv", data_dir=str(csv_dir), tickers=("BBB", "BAD", "NOPE", "AAA"))
    loaded, failed = data.load_many(cfg, min_rows=30, purpose="a test", keep_last=7)
    assert list(loaded) == ["BBB", "AAA"] and list(failed) == ["BAD", "NOPE"]
    assert "negative Volume -5 on 2020-01-01" in str(failed["BAD"])
    assert "NOPE: file" in str(failed["NOPE"]) and "not found" in str(failed["NOPE"])
    full = data.load_prices("AAA", cfg, 30, "a test")
    pd.testing.assert_frame_equal(loaded["AAA"], full.iloc[-7:])
    everything, _ = data.load_many(cfg.model_copy(update={"tickers": ("AAA",)}))
    pd.testing.assert_frame_equal(everything["AAA"], full)
