"""A `csv` folder's price files: file names mapped to tickers, header names to the known
columns, and one file read as raw bars for validate.validate_prices, its dates written as the
exchange's days.

Every line printed from a file name stays one line: a name with a newline or another
non-printable character is quoted (`shown`), and no such name is a ticker's file.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lstm_pipeline.errors import DataValidationError, InputError, one_line
from lstm_pipeline.validate import ADJ_CLOSE, FEATURES, validate_ticker

log = logging.getLogger(__name__)

# a file's header names these in any case, with any surrounding whitespace (`adj close`, ` CLOSE `)
KNOWN_COLUMNS = {name.casefold(): name for name in ("Date", *FEATURES, ADJ_CLOSE)}
_HEADER_BYTES = 65536  # a header line longer than this is read by pandas
# a time after the date, then its UTC offset: `2024-03-08 00:00:00-05:00`, `...T09:30Z`
_OFFSET = re.compile(r"^(?P<local>.*\d:\d\d(?::\d\d(?:\.\d+)?)?)\s*(?:Z|UTC|[+-]\d\d(?::?\d\d)?)$")
_TEXT = pd.api.types.pandas_dtype(str)  # what read_csv makes of a column of dates (or dtype=str)


def ticker_of_file(name: str) -> str | None:
    """The ticker a price file's name gives (`aapl.csv`, `AAPL.CSV`: AAPL), None for a name
    that is no ticker file (`._SPY.csv`, macOS metadata; `notes.txt`; ` AAPL.csv`, whose space
    validate_ticker would strip: a ticker file's path is printable as it is)."""
    stem = name[: -len(".csv")]
    if not name.lower().endswith(".csv") or stem != stem.strip():
        return None
    try:
        return validate_ticker(stem)
    except InputError:
        return None


def shown(name: str | Path) -> str:
    """A file name as a message line may hold it: as it is, or quoted by repr when it holds a
    newline or another non-printable character (every line printed stays one line)."""
    text = str(name)
    return text if text.isprintable() else repr(text)


def price_files(folder: Path, warn: bool = True) -> Mapping[str, Path]:
    """Ticker -> its `TICKER.csv` in `folder`, names matched case-insensitively.

    InputError naming both files when two name one ticker (`AAPL.csv`, `aapl.csv`); `.csv`
    files whose name is no ticker are skipped, with one warning line when `warn` and some
    ticker file is left (else the caller's error says what was skipped: see skipped_note).
    """
    found, skipped = _scan_price_files(folder, _folder_state(folder))
    if skipped and found and warn:
        log.warning("%s: skipped %s: not TICKER.csv file names", shown(folder), skipped)
    return MappingProxyType(found)  # shared: read-only


def skipped_note(folder: Path) -> str:
    """` (skipped ._SPY.csv: not ticker names)` for the error that `folder` holds no ticker
    file, "" when it skipped nothing."""
    skipped = _scan_price_files(folder, _folder_state(folder))[1]
    return f" (skipped {skipped}: not ticker names)" if skipped else ""


def _folder_state(folder: Path) -> int | None:
    try:
        return folder.stat().st_mtime_ns  # adding, removing or renaming a file changes it
    except OSError:
        return None


# A run looks up each of its tickers in one folder: a scan per folder state, not per ticker,
# so 5,000 tickers cost one listing instead of 5,000 (14 ms each at 2,000 files).
@functools.lru_cache(maxsize=16)
def _scan_price_files(folder: Path, changed: int | None) -> tuple[dict[str, Path], str]:
    """Ticker -> file, and the skipped `.csv` names as one printable list ("" for none)."""
    found: dict[str, list[Path]] = {}
    skipped = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        ticker = ticker_of_file(path.name)
        if ticker is None:
            skipped += [shown(path.name)] if path.name.lower().endswith(".csv") else []
        elif path.is_file():
            found.setdefault(ticker, []).append(path)
    for ticker, paths in found.items():
        if len(paths) > 1:
            raise InputError(
                f"{ticker}: {' and '.join(map(shown, paths))} name the same ticker: keep one"
            )
    return {ticker: paths[0] for ticker, paths in found.items()}, ", ".join(skipped)


def read_price_csv(path: Path, ticker: str) -> pd.DataFrame:
    """A yfinance-layout CSV (`Date,Open,High,Low,Close[,Adj Close],Volume`) as a raw frame,
    its known columns under their canonical names (canonical_columns)."""
    where = f"{ticker}: file {shown(path)}"
    if not path.is_file():
        raise InputError(f"{where} not found")
    try:
        header = plain_header(path) or pandas_header(path)
        columns = canonical_columns(header, where)
        frame = read_cells(path, header, columns.index("Date") if "Date" in columns else None)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, DataValidationError):
            raise
        raise DataValidationError(f"{where} is not a readable CSV ({one_line(exc)})") from None
    # pandas renamed a repeated unknown name (`Notes.1`): the known ones are unique
    frame.columns = [known or name for known, name in zip(columns, frame.columns, strict=True)]
    if "Date" not in frame.columns:
        raise DataValidationError(f"{where}: no Date column")
    dates = exchange_dates(frame["Date"])
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna())[0])
        raise DataValidationError(f"{where}: bad date {frame['Date'].iloc[row]!r} in row {row + 2}")
    del frame["Date"]  # in place: this frame is ours, and a copy costs more than the parse
    frame.index = pd.DatetimeIndex(dates, name="Date")
    return frame


def pandas_header(path: Path) -> list[str]:
    """The header line's names as pandas reads them, each as written."""
    return list(pd.read_csv(path, header=None, nrows=1, dtype=str, na_filter=False).iloc[0])


def read_cells(path: Path, header: list[str], date_at: int | None) -> pd.DataFrame:
    """The file as read_csv reads it, its dates (column `date_at` of `header`) as text: pandas
    would read 20260212 as a number, then warn on parsing it. It reads a column of dates as
    text by itself, so `dtype=` (~0.5 ms a file) is given only where it did not."""
    frame = pd.read_csv(path, low_memory=False)
    if date_at is None or frame.iloc[:, date_at].dtype == _TEXT:
        return frame
    return pd.read_csv(path, dtype={header[date_at]: str}, low_memory=False)


def plain_header(path: Path) -> list[str] | None:
    """The header line's names as pandas reads them (`header=None, dtype=str`), split here in
    a few microseconds instead of pandas' ~0.5 ms; None where pandas must read it: a compressed
    file (no `.csv` name), a line that is blank, quoted, too long or not printable UTF-8 (a
    byte-order mark, a lone carriage return)."""
    if not path.name.lower().endswith(".csv"):
        return None
    with path.open("rb") as file:
        head = file.read(_HEADER_BYTES)
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) == _HEADER_BYTES:
        return None
    try:
        text = line.removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.strip() or not text.isprintable() or '"' in text:
        return None
    return text.split(",")


def canonical_columns(header: list[str], where: str) -> list[str | None]:
    """Each header name's known column (KNOWN_COLUMNS: matched case-insensitively, surrounding
    whitespace stripped), None for a name the pipeline does not use; DataValidationError when
    two names are one column (`Close` twice, `Close` and ` close`): which would it be?"""
    names = [KNOWN_COLUMNS.get(str(name).strip().casefold()) for name in header]
    repeated = next((n for i, n in enumerate(names) if n and n in names[:i]), None)
    if repeated:
        raise DataValidationError(f"{where}: column {repeated} repeats")
    return names


def exchange_dates(text: pd.Series) -> pd.DatetimeIndex:
    """Dates as written, as naive midnights (NaT where unreadable): a UTC offset is dropped
    (yfinance writes each daily bar at midnight exchange time, the offset changing at daylight
    saving), a time of day too, so two rows of one day are a repeated date. Compact `20260212`
    is ISO 8601 too."""
    days = iso_days(text)
    if days is not None:  # the usual file
        return days
    plain = pd.to_datetime(text.to_numpy(), format="%Y-%m-%d", errors="coerce")
    if not plain.hasnans:
        return plain
    local = text.astype("string").str.strip().str.replace(_OFFSET, r"\g<local>", regex=True)
    try:
        dates = pd.to_datetime(local, format="ISO8601", errors="coerce")
    except ValueError:  # an offset without a time (`2024-03-08+01:00`) beside another
        dates = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    return pd.DatetimeIndex(dates.dt.normalize())


def iso_days(text: pd.Series) -> pd.DatetimeIndex | None:
    """Dates written exactly `YYYY-MM-DD`, as pandas' `format="%Y-%m-%d"` reads them, parsed
    by Arrow's strict cast (~0.05 ms for 2,500 rows; pandas ~0.3 ms); None when a cell is
    missing, not text or written any other way (pandas' parse then says which)."""
    try:
        cells = pa.array(text)
        if not (pa.types.is_string(cells.type) or pa.types.is_large_string(cells.type)):
            return None
        days = pc.cast(cells, pa.date32())
    except pa.ArrowException:
        return None
    if days.null_count:
        return None
    return pd.DatetimeIndex(days.to_numpy(zero_copy_only=False).astype("datetime64[us]"))
