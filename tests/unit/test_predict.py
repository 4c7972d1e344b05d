import pandas as pd
import pytest

from lstm_pipeline.errors import InputError
from lstm_pipeline.predict import write_forecasts


def test_forecast_file_needs_a_known_extension(tmp_path):
    with pytest.raises(InputError, match="use a .csv or .parquet"):
        write_forecasts(pd.DataFrame({"a": [1]}), tmp_path / "f.xlsx")
    assert list(tmp_path.iterdir()) == []
