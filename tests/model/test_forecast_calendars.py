"""The forecast table names each row's calendar and takes its target dates from it."""

import pandas as pd

from lstm_pipeline.data import FEATURES
from lstm_pipeline.predict import FORECAST_COLUMNS, OnnxForecaster, forecast_table
from tests.conftest import make_prices


def prices_ending(day: str, n: int = 30) -> pd.DataFrame:
    """n bars of FEATURES, indexed by date, the last on `day`."""
    frame = make_prices(n)[list(FEATURES)]
    frame.index = pd.bdate_range(end=day, periods=n)
    return frame


def test_each_row_says_which_calendar_its_target_dates_come_from(tiny_onnx):
    prices = {
        "AAPL": prices_ending("2025-01-08"),  # New York shut on the 9th (Carter's funeral)
        "VOD.L": prices_ending("2025-05-02"),  # London shut on the 5th (May bank holiday)
        "SPY": prices_ending("2025-05-02"),  # overridden: London's days
        "ABC.ZZ": prices_ending("2025-05-02"),  # unknown suffix: New York's
    }
    table = forecast_table(OnnxForecaster(tiny_onnx[0]), prices, "7", "run", {"SPY": "XLON"})
    assert list(table.columns) == list(FORECAST_COLUMNS)
    assert list(FORECAST_COLUMNS).index("calendar") == list(FORECAST_COLUMNS).index("run_id") + 1
    by_ticker = table.groupby("ticker", sort=False)
    calendars = by_ticker["calendar"].unique().map(list).to_dict()
    assert calendars == {"AAPL": ["XNYS"], "VOD.L": ["XLON"], "SPY": ["XLON"], "ABC.ZZ": ["XNYS"]}
    targets = by_ticker["target_date"].apply(lambda d: [t.strftime("%Y-%m-%d") for t in d])
    assert targets["AAPL"] == ["2025-01-10", "2025-01-13", "2025-01-14"]
    assert targets["VOD.L"] == targets["SPY"] == ["2025-05-06", "2025-05-07", "2025-05-08"]
    assert targets["ABC.ZZ"] == ["2025-05-05", "2025-05-06", "2025-05-07"]
