import pandas as pd
import pytest

from lstm_pipeline.errors import InputError
from lstm_pipeline.predict import next_trading_days, write_forecasts


@pytest.mark.parametrize(
    "as_of,expected",
    [
        ("2024-07-03", ["2024-07-05", "2024-07-08"]),  # Independence Day
        ("2024-03-28", ["2024-04-01", "2024-04-02"]),  # Good Friday
        ("2026-11-25", ["2026-11-27", "2026-11-30"]),  # Thanksgiving, then a weekend
        ("2026-12-24", ["2026-12-28", "2026-12-29"]),  # Christmas
        ("2027-12-30", ["2027-12-31", "2028-01-03"]),  # New Year's Day on a Saturday: no Friday off
        ("2025-06-18", ["2025-06-20", "2025-06-23"]),  # Juneteenth
    ],
)
def test_target_dates_skip_weekends_and_nyse_holidays(as_of, expected):
    days = next_trading_days(pd.Timestamp(as_of), 2)
    assert [d.strftime("%Y-%m-%d") for d in days] == expected


def test_forecast_file_needs_a_known_extension(tmp_path):
    with pytest.raises(InputError, match="use a .csv or .parquet"):
        write_forecasts(pd.DataFrame({"a": [1]}), tmp_path / "f.xlsx")
    assert list(tmp_path.iterdir()) == []
