"""What a csv file's header and cells mean: the known columns (Date, Open, High, Low, Close,
Adj Close, Volume) are named in any case with any surrounding whitespace, one column each, and
unknown columns are ignored; a cell is a number, never text or a boolean read as 1 or 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_pipeline import data
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import DataValidationError
from tests.synthetic import make_prices

KNOWN = ("Date", "Open", "High", "Low", "Close", "Adj Close", "Volume")
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
spellings = st.builds(
    lambda name, case, left, right: f"{left}{case(name)}{right}",
    st.sampled_from(KNOWN),
    st.sampled_from([str, str.lower, str.upper, str.swapcase, str.title]),
    st.sampled_from(["", " ", "  ", "\t"]),
    st.sampled_from(["", " ", "\t "]),
)


def write_text(folder: Path, text: str) -> DataConfig:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "AAA.csv").write_text(text)
    return DataConfig(source="csv", data_dir=str(folder))


def with_adjustment(rows: int = 30) -> pd.DataFrame:
    frame = make_prices(rows)
    return frame.assign(**{"Adj Close": frame["Close"] / 2})  # adjusted: half the raw prices


def renamed(frame: pd.DataFrame, header: list[str], sep: str = ",") -> str:
    return frame.set_axis(header, axis=1).to_csv(index=False, sep=sep)


@SETTINGS
@given(case=st.sampled_from([str.lower, str.upper, str.swapcase]), pad=st.sampled_from(["", " "]))
def test_known_columns_are_named_in_any_case_and_spacing(tmp_path_factory, case, pad):
    frame = with_adjustment()
    header = [f"{pad}{case(name)}{pad}" for name in frame.columns]
    cfg = write_text(tmp_path_factory.mktemp("case"), renamed(frame, header))
    prices = data.load_prices("AAA", cfg)
    assert list(prices.columns) == ["Open", "High", "Low", "Close", "Volume"]
    assert np.allclose(prices["Close"], frame["Close"].to_numpy() / 2)  # adjusted, not ignored


def test_a_lower_case_adj_close_adjusts_like_adj_close(tmp_path: Path):
    frame = with_adjustment()
    lower = data.load_prices("AAA", write_text(tmp_path / "a", renamed(frame, [
        "Date", "Open", "High", "Low", "Close", "adj close", "Volume"])))  # fmt: skip
    canonical = data.load_prices("AAA", write_text(tmp_path / "b", frame.to_csv(index=False)))
    pd.testing.assert_frame_equal(lower, canonical, check_freq=False)
    assert lower["Close"].iloc[0] == pytest.approx(frame["Close"].iloc[0] / 2)


def spelled(name: str) -> st.SearchStrategy[str]:
    """`name` in some case with some surrounding whitespace: `adj close`, ` CLOSE `."""
    return st.builds(
        lambda case, left, right: f"{left}{case(name)}{right}",
        st.sampled_from([str, str.lower, str.upper, str.swapcase, str.title]),
        st.sampled_from(["", " ", "  ", "\t"]),
        st.sampled_from(["", " ", "\t "]),
    )


@SETTINGS
@given(column=st.sampled_from(KNOWN), position=st.integers(0, 7), data_=st.data())
def test_a_column_named_twice_in_any_spelling_is_refused_naming_it(
    tmp_path_factory, column, position, data_
):
    frame = with_adjustment()
    frame.insert(position, "copy", frame[column], allow_duplicates=True)
    names = [data_.draw(spelled(column)) if c in (column, "copy") else c for c in frame.columns]
    cfg = write_text(tmp_path_factory.mktemp("twice"), renamed(frame, names))
    with pytest.raises(DataValidationError) as err:
        data.load_prices("AAA", cfg)
    assert str(err.value) == f"AAA: file {cfg.data_dir}/AAA.csv: column {column} repeats"


@pytest.mark.parametrize(
    "header",
    [
        "Date,Open,High,Low,Close,Adj Close,Volume,Close",  # pandas would read `Close.1`
        "Date,Date,Open,High,Low,Close,Volume",
        "Date,Open,High,Low,Close,Volume,Volume",
    ],
)
def test_a_repeated_header_without_its_own_cells_is_refused_too(tmp_path: Path, header: str):
    body = make_prices(30).to_csv(index=False).partition("\n")[2]
    repeated = next(n for n in header.split(",") if header.split(",").count(n) > 1)
    cfg = write_text(tmp_path, f"{header}\n{body}")
    with pytest.raises(DataValidationError, match=f"AAA.csv: column {repeated} repeats$"):
        data.load_prices("AAA", cfg)


def test_unknown_columns_are_ignored_even_when_repeated(tmp_path: Path):
    frame = make_prices(30)
    frame.insert(1, "Notes", "x")
    frame.insert(3, "notes", "y")
    cfg = write_text(tmp_path, renamed(frame, [*frame.columns[:3], "Notes", *frame.columns[4:]]))
    assert list(data.load_prices("AAA", cfg).columns) == ["Open", "High", "Low", "Close", "Volume"]


BOOLEANS = ["True", "False", "TRUE", "false", "true"]


@SETTINGS
@given(
    column=st.sampled_from(KNOWN[1:]),
    rows=st.lists(st.integers(0, 29), min_size=1, max_size=30, unique=True),
    cell=st.sampled_from(BOOLEANS),
    whole=st.booleans(),
)
def test_booleans_in_any_column_are_non_numeric(tmp_path_factory, column, rows, cell, whole):
    """A whole column of booleans (pandas reads bool), some (object), or beside numbers."""
    rows = list(range(30)) if whole else rows
    frame = with_adjustment().astype({column: object})
    frame.loc[rows, column] = cell
    cfg = write_text(tmp_path_factory.mktemp("bool"), frame.to_csv(index=False))
    first = frame["Date"].iloc[min(rows)]
    with pytest.raises(DataValidationError) as err:
        data.load_prices("AAA", cfg)
    assert str(err.value).endswith(f": missing or non-numeric {column} on {first}"), err.value


def test_a_volume_of_true_and_false_is_refused(tmp_path: Path):
    frame = make_prices(30).astype({"Volume": object})
    frame["Volume"] = ["True", "False"] * 15
    cfg = write_text(tmp_path, frame.to_csv(index=False))
    with pytest.raises(DataValidationError, match=r"missing or non-numeric Volume on 2020-01-01$"):
        data.load_prices("AAA", cfg)
