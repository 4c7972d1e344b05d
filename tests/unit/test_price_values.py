"""Non-finite and overflowing values, in any column and from every source, are refused naming
ticker, file, column and date; whatever loads is finite and float32-safe, also after the
split/dividend adjustment and the window-relative ratios the model takes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lstm_pipeline import data
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import DataValidationError
from lstm_pipeline.validate import PRICE_MAX, PRICE_MIN, VOLUME_MAX
from tests.fake_yahoo import FakeYahoo, yahoo_frame
from tests.synthetic import make_prices

COLUMNS = ("Open", "High", "Low", "Close", "Adj Close", "Volume")
# values no model may see: not finite, or not representable in float32, or past the bounds
BAD_VALUES = ["inf", "-inf", "Infinity", "1e300", "1e39", "3.5e38", "1e16", "1e19", "1e-300"]
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def write_file(folder: Path, frame: pd.DataFrame, ticker: str = "AAA") -> DataConfig:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{ticker}.csv", index=False)
    return DataConfig(source="csv", data_dir=str(folder))


def with_value(frame: pd.DataFrame, column: str, row: int, value: str) -> pd.DataFrame:
    frame = frame.astype({column: object})
    frame.loc[row, column] = value
    return frame


def is_out_of_bounds(column: str, value: float) -> bool:
    if column == "Volume":
        return not 0 <= value <= VOLUME_MAX
    return not PRICE_MIN <= value <= PRICE_MAX


@SETTINGS
@given(column=st.sampled_from(COLUMNS), row=st.integers(0, 29), value=st.sampled_from(BAD_VALUES))
def test_a_value_no_model_can_take_is_refused_naming_column_and_date(
    tmp_path_factory, column, row, value
):
    folder = tmp_path_factory.mktemp("prices")
    frame = with_value(make_prices(30), column, row, value)
    cfg = write_file(folder, frame)
    assume(is_out_of_bounds(column, float(value)))  # 1e-300 is a volume of 0 in float32
    with pytest.raises(DataValidationError) as err:
        data.load_prices("AAA", cfg)
    message = str(err.value)
    assert message.startswith(f"AAA: file {folder}/AAA.csv: "), message
    date = frame.loc[row, "Date"]
    assert message.endswith(f" on {date}"), message
    assert re.match(f"(non-finite )?{column} ", message.split(".csv: ")[1]), message


def test_infinity_in_each_column_says_non_finite(tmp_path: Path):
    for column in COLUMNS:
        cfg = write_file(tmp_path / column, with_value(make_prices(30), column, 7, "inf"))
        with pytest.raises(DataValidationError, match=f"non-finite {column} inf on 2020-01-10"):
            data.load_prices("AAA", cfg)


@SETTINGS
@given(
    close=st.floats(PRICE_MIN, 1e3),
    open_=st.floats(1e3, PRICE_MAX),
    adj_close=st.floats(PRICE_MIN, PRICE_MAX),
    row=st.integers(0, 29),
)
def test_an_adjustment_out_of_bounds_is_refused_naming_the_adjusted_column(
    tmp_path_factory, close, open_, adj_close, row
):
    """Raw bars in bounds whose Adj Close / Close factor takes Open or Low out of them."""
    assume(not PRICE_MIN <= open_ * (adj_close / close) <= PRICE_MAX)  # as adjust_ohlc does it
    frame = make_prices(30)
    bar = {"Open": open_, "High": open_, "Low": close, "Close": close, "Adj Close": adj_close}
    frame = frame.astype({c: float for c in bar})
    frame.loc[row, list(bar)] = list(bar.values())
    cfg = write_file(tmp_path_factory.mktemp("prices"), frame)
    with pytest.raises(DataValidationError) as err:
        data.load_prices("AAA", cfg)
    message = str(err.value)
    assert message.startswith(f"AAA: file {cfg.data_dir}/AAA.csv: Open "), message
    date = frame.loc[row, "Date"]
    assert message.endswith(f"Close out of range 1e-12 to 1e+15 on {date}"), message
    assert "after adjustment by Adj Close / Close" in message, message


@SETTINGS
@given(
    top=st.floats(PRICE_MIN, PRICE_MAX),
    volume=st.floats(0, VOLUME_MAX),
    factor=st.floats(1e-6, 1e6),
)
def test_whatever_loads_reaches_the_model_finite_in_float32(tmp_path_factory, top, volume, factor):
    """Bars scaled anywhere in (and past) the bounds: refused as out of range, or the window
    and the ratios the graph takes of it are finite in float32."""
    frame = make_prices(30)
    prices = ["Open", "High", "Low", "Close"]
    frame[prices] = frame[prices] * (top / frame["High"].max())
    frame["Adj Close"] = frame["Close"] * factor
    frame["Volume"] = volume
    cfg = write_file(tmp_path_factory.mktemp("prices"), frame)
    try:
        loaded = data.load_prices("AAA", cfg)
    except DataValidationError as exc:
        assert "out of range" in str(exc), exc
        return
    window = data.latest_window(loaded, 10)  # float32, as the model gets it
    assert np.isfinite(window).all()
    ratios = np.log(window[:, :4] / window[-1, 3])
    volume_ratio = np.log((window[:, 4] + 1) / (window[:, 4].mean() + 1))
    assert np.isfinite(ratios).all() and np.isfinite(volume_ratio).all()


@pytest.mark.parametrize("value", [np.inf, 1e300, 1e39])
def test_the_yfinance_path_refuses_them_and_writes_no_cache(
    value: float, yf_cfg: DataConfig, fake_yahoo: FakeYahoo
):
    bars = yahoo_frame(30).astype({"Volume": float})
    bars.loc[bars.index[12], "Volume"] = value
    fake_yahoo.history["AAPL"] = bars
    with pytest.raises(DataValidationError, match=r"AAPL: yfinance 1d bars: .*Volume .* on 2020"):
        data.load_prices("AAPL", yf_cfg)
    assert not list(Path(yf_cfg.cache_dir or "").rglob("*.parquet"))


def test_a_cache_holding_infinity_is_refused_on_load(yf_cfg: DataConfig, fake_yahoo: FakeYahoo):
    bars = yahoo_frame(30)
    bars.loc[bars.index[3], "Close"] = np.inf
    path = data.cache.cache_path(yf_cfg.cache_root(), "AAPL")
    data.save_cache(bars, path, covered_from=None)
    cfg = yf_cfg.model_copy(update={"end": bars.index[-1].date()})  # the cache covers it all
    with pytest.raises(DataValidationError, match="cache .*: non-finite Close inf on 2020-01-06"):
        data.load_prices("AAPL", cfg)
    assert fake_yahoo.calls == []


def test_fetch_from_a_csv_with_infinity_writes_no_cache(tmp_path: Path):
    cfg = write_file(tmp_path / "prices", with_value(make_prices(30), "High", 4, "inf"))
    cfg = cfg.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    with pytest.raises(DataValidationError, match="non-finite High inf"):
        data.fill_cache("AAA", cfg)
    assert not (tmp_path / "cache").exists()
