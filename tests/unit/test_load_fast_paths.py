"""The fast paths of loading a local price file agree with the general paths they skip.

Reading and validating one file costs a few milliseconds, most of it pandas' fixed cost per
operation, so the usual file takes shortcuts: its header line split in Python, one read without
a dtype, YYYY-MM-DD dates parsed by Arrow, every rule proved on one numpy array. Each shortcut
may only decline (the general path then runs); whenever it is taken, the frames, the errors and
their messages, the log lines and the warnings must be those of the general path. These tests
run generated files and frames, valid and broken, both ways and compare everything.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lstm_pipeline import csv_files, data, validate
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import InputError
from lstm_pipeline.validate import ADJ_CLOSE, FEATURES
from tests.csv_fuzz import TICKER, file_bytes
from tests.synthetic import make_prices

CFG = DataConfig(source="csv", data_dir=".")
FIXTURES_IN_GIVEN = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def general_read_cells(path: Path, header: list[str], date_at: int | None) -> pd.DataFrame:
    """What read_price_csv read before its shortcut: the dates' dtype always given."""
    dates_as_text = {header[date_at]: str} if date_at is not None else {}
    return pd.read_csv(path, dtype=dates_as_text, low_memory=False)


def no_plain_values(raw: pd.DataFrame, names: Any = validate.plain_values) -> tuple[None, Any]:
    """plain_values declining every frame: its names, no array (`names`: the real one)."""
    return None, names(raw)[1]


@contextmanager
def general_paths() -> Iterator[None]:
    """Every shortcut declined: pandas reads the header, the dates' dtype is always given,
    pandas parses the dates, the rules run one by one, columns go through as_numbers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_files, "plain_header", lambda path: None)
        patch.setattr(csv_files, "read_cells", general_read_cells)
        patch.setattr(csv_files, "iso_days", lambda text: None)
        patch.setattr(validate, "sound_bars", lambda raw: None)
        patch.setattr(validate, "plain_values", no_plain_values)
        patch.setattr(data, "plain_values", no_plain_values)
        yield


def outcome(run: Callable[[], Any], caplog: pytest.LogCaptureFixture) -> tuple[Any, ...]:
    """What `run` returned or the InputError it raised, its log lines and its warnings."""
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        try:
            result: Any = run()
        except InputError as exc:
            result = (type(exc).__name__, str(exc))
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    return result, lines, [(w.category, str(w.message)) for w in caught]


def assert_same(fast: tuple[Any, ...], general: tuple[Any, ...]) -> None:
    """Equal outcomes; frames equal exactly: values, dtypes, index (its dtype, name and
    frequency), column names and attrs."""
    (fast_result, *fast_rest), (general_result, *general_rest) = fast, general
    assert fast_rest == general_rest
    if isinstance(general_result, tuple) and isinstance(general_result[0], str):
        assert fast_result == general_result  # an error, its message
        return
    fast_frames = fast_result if isinstance(fast_result, tuple) else (fast_result,)
    general_frames = general_result if isinstance(general_result, tuple) else (general_result,)
    assert len(fast_frames) == len(general_frames)
    for mine, theirs in zip(fast_frames, general_frames, strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
        assert mine.attrs == theirs.attrs
        assert mine.columns.dtype == theirs.columns.dtype


def both_ways(run: Callable[[], Any], caplog: pytest.LogCaptureFixture) -> tuple[Any, ...]:
    """`run` with the shortcuts and without them: the outcome, once both agree."""
    fast = outcome(run, caplog)
    with general_paths():
        general = outcome(run, caplog)
    assert_same(fast, general)
    return fast


def load_file(path: Path) -> Callable[[], tuple[pd.DataFrame, pd.DataFrame]]:
    """read_price_csv, then check_bars: the validated bars and their adjusted prices."""

    def run() -> tuple[pd.DataFrame, pd.DataFrame]:
        raw = csv_files.read_price_csv(path, TICKER)
        checked = data.check_bars(raw, TICKER, f"file {path.name}", CFG)
        return checked.bars, checked.prices

    return run


@st.composite
def odd_starts(draw: st.DrawFn, content: bytes) -> bytes:
    """A file's first line as the header shortcut must decline or read as pandas does."""
    header, newline, body = content.partition(b"\n")
    kind = draw(st.sampled_from(["as is"] * 6 + ["bom", "quoted", "blank", "spaces", "cr"]))
    if kind == "bom":
        return b"\xef\xbb\xbf" + content
    if kind == "quoted":
        return b",".join(b'"' + name + b'"' for name in header.split(b",")) + newline + body
    if kind == "blank":
        return draw(st.sampled_from([b"\n", b"\r\n", b"  \n", b"\t\n"])) + content
    if kind == "spaces":
        return header.replace(b",", draw(st.sampled_from([b" ,", b", ", b",,"]))) + newline + body
    if kind == "cr":
        return content.replace(b"\n", b"\r")
    return content


_FILES = st.booleans().flatmap(file_bytes).flatmap(odd_starts)


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURES_IN_GIVEN)
@given(content=_FILES)
def test_a_file_loads_as_the_general_path_loads_it(tmp_path_factory, caplog, content):
    path = tmp_path_factory.mktemp("fast") / f"{TICKER}.csv"
    path.write_bytes(content)
    result, _, _ = both_ways(load_file(path), caplog)
    event("loaded" if isinstance(result[0], pd.DataFrame) else f"refused: {result[0]}")
    event(f"header split in Python: {csv_files.plain_header(path) is not None}")


def test_the_usual_file_takes_every_shortcut(tmp_path: Path, caplog):
    path = tmp_path / f"{TICKER}.csv"
    make_prices(300, seed=1, start="2015-01-01").to_csv(path, index=False)
    header = csv_files.plain_header(path)
    assert header == ["Date", *FEATURES[:4], ADJ_CLOSE, "Volume"]
    assert header == csv_files.pandas_header(path)
    raw = csv_files.read_price_csv(path, TICKER)
    assert validate.sound_bars(raw) is not None
    bars, prices = both_ways(load_file(path), caplog)[0]
    assert list(prices.columns) == list(FEATURES) and len(bars) == 300


# the dates files are written with: ISO (real days or not), unpadded, other styles, and what
# numpy or a lenient parser would take (a bare year, padding, full-width digits). Not `today`:
# pandas reads it as the time of the parse, which differs between two parses.
_ODD_DATES = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}".format,
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
    ),
    st.builds("{}-{}-{}".format, st.integers(1, 2100), st.integers(1, 12), st.integers(1, 31)),
    st.sampled_from(
        [
            *("", "2015", "2015-01", "NaT", "nan", " 2015-01-01", "2015-01-01 ", "20150101"),
            *("2015/01/01", "2015-01-01T00:00", "2015-01-01 16:00:00", "+015-01-01"),
            *("2024-03-08 00:00:00-05:00", "2024-03-08T09:30Z", "２０１５-01-01", "2015-02-29"),
        ]
    ),
)


@st.composite
def date_cells(draw: st.DrawFn) -> list[str | None]:
    """Real days as ISO text, about half the time one cell written otherwise or missing."""
    cells: list[str | None] = draw(st.lists(st.dates().map(date.isoformat), min_size=1, max_size=6))
    if draw(st.booleans()):
        cells[draw(st.integers(0, len(cells) - 1))] = draw(st.none() | _ODD_DATES)
    return cells


@settings(max_examples=300, deadline=None)
@given(cells=date_cells(), dtype=st.sampled_from([str, object]))
def test_dates_parse_as_the_general_parse_reads_them(cells, dtype):
    text = pd.Series(cells, dtype=dtype)
    fast = csv_files.exchange_dates(text)
    with general_paths():
        general = csv_files.exchange_dates(text)
    pd.testing.assert_index_equal(fast, general, exact=True)
    event(f"Arrow's parse taken: {csv_files.iso_days(text) is not None}")


def test_arrow_parses_every_plain_iso_date_pandas_reads():
    cells = ["2015-01-01", "0001-01-01", "9999-12-31", "2016-02-29", "1970-01-01"]
    days = csv_files.iso_days(pd.Series(cells, dtype=str))
    assert days is not None
    pd.testing.assert_index_equal(days, pd.to_datetime(cells, format="%Y-%m-%d"), exact=True)


_CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -1.0, 1e-13, 1e-12, 1e15, 2e15, 1e18, 2e18, 10.0, 10.000001]),
)
_COLUMN_KINDS = st.sampled_from(["float", "int", "int", "text", "bool"])


@st.composite
def raw_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Raw bars as sources give them: numbers mostly sound, sometimes not; a column of ints,
    text or booleans; dates repeated or out of order; with or without Adj Close."""
    n = draw(st.integers(0, 6))
    base = make_prices(max(n, 1), seed=draw(st.integers(0, 3))).iloc[:n].drop(columns="Date")
    frame = base.astype("float64")
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2])) if n else 0):
        frame.iloc[draw(st.integers(0, n - 1)), draw(st.integers(0, 5))] = draw(_CELL)
    for column in draw(st.lists(st.sampled_from(list(frame.columns)), max_size=1)):
        kind = draw(_COLUMN_KINDS)
        if kind == "int":
            frame[column] = frame[column].fillna(0).clip(-1e18, 1e18).astype("int64")
        elif kind != "float":
            frame[column] = (frame[column] > 0) if kind == "bool" else frame[column].astype(str)
    if not draw(st.booleans()):
        frame = frame.drop(columns=ADJ_CLOSE)
    days = list(pd.bdate_range("2024-03-01", periods=n))
    if n > 1 and draw(st.integers(0, 3)) == 0:  # a repeated or an earlier date
        i = draw(st.integers(1, n - 1))
        days[i] = days[i - draw(st.sampled_from([0, 1]))] - pd.Timedelta(
            days=draw(st.integers(0, 1))
        )
    frame.index = pd.DatetimeIndex(days, name="Date")
    return frame


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURES_IN_GIVEN)
@given(raw=raw_frames())
def test_the_sound_bars_shortcut_agrees_with_every_rule(caplog, raw):
    def run() -> tuple[pd.DataFrame, pd.DataFrame]:
        checked = data.check_bars(raw, TICKER, "test", CFG)
        return checked.bars, checked.prices

    both_ways(run, caplog)
    event(f"proved sound on arrays: {validate.sound_bars(raw) is not None}")


def test_plain_values_are_the_numeric_columns_as_one_array():
    raw = (
        make_prices(20, seed=2)
        .drop(columns="Date")
        .assign(Volume=lambda f: f["Volume"].astype("int64"))
    )
    values, columns = validate.plain_values(raw)
    assert values is not None and columns == [*FEATURES, ADJ_CLOSE]
    np.testing.assert_array_equal(values, raw[columns].to_numpy(dtype="float64"))
    assert validate.plain_values(raw.assign(Close=raw["Close"].astype(str)))[0] is None
