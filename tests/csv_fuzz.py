"""Hypothesis strategies for malformed price folders, shared by the csv fuzz tests of the unit
layer (the library path the CLI takes) and of the integration layer (the CLI itself).

A folder holds one ticker's file, AAA, under a name in any case, sometimes beside a macOS
`._` metadata file, a name with a newline or surrounding whitespace, or a second file naming
the same ticker; sometimes only files that name no ticker. The file starts from valid bars and
is then broken the ways price files are: columns missing, extra, duplicated (with or without
their cells, in another case) or reordered; cells empty, textual, boolean, negative, non-finite
or past float32; whole columns of True/False; dates repeated, unsorted, unreadable, in other
styles or with UTC offsets; whole columns scaled to extremes; other separators, line endings
and encodings; empty, header-only or binary files. Known column names come in any case and
spacing (`adj close`, ` CLOSE `), in clean files too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hypothesis import strategies as st

from tests.synthetic import make_prices

TICKER = "AAA"
COLUMNS = ("Date", "Open", "High", "Low", "Close", "Adj Close", "Volume")
EXTRAS = ("Dividends", "Stock Splits", "Café €", "Notes")  # non-ASCII: encodings matter
CELLS = (
    *("", "nan", "NaN", "null", "abc", "TRUE", "True", "false", "1,5", " 12 ", "0", "-1", "-0.0"),
    *("inf", "-inf", "Infinity", "1e300", "-1e300", "1e39", "3.5e38", "1e-300", "1e16"),
    "99999999999999999999999",
)
SCALES = (1e-14, 1e-9, 1e6, 1e12, 1e14, 1e20)
ZONES = ("America/New_York", "Europe/London", "Asia/Tokyo", "UTC")
ENCODINGS = ("utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252")
BOOLEANS = ("True", "False", "TRUE", "false")
# `.csv` names that name no ticker: skipped by the folder scan, quoted when not printable
SKIPPED = ("._AAA.csv", "A\nB.csv", " AAA.csv", "AAA\t.csv", "x\x1b.csv")


def spellings(name: str) -> st.SearchStrategy[str]:
    """A known column's name as files write it: mostly as is, else in another case or spacing."""
    return st.sampled_from(
        [name] * 4 + [name.lower(), name.upper(), f" {name}", f"{name.lower()} "]
    )


def _date_text(days: pd.DatetimeIndex, style: str, zone: str) -> list[str]:
    if style == "iso":
        return list(days.strftime("%Y-%m-%d"))
    if style == "compact":
        return list(days.strftime("%Y%m%d"))
    if style == "time":
        return list(days.strftime("%Y-%m-%d 16:00:00"))
    if style == "slash":
        return list(days.strftime("%m/%d/%Y"))
    if style == "epoch":
        return [str(int(t.timestamp())) for t in days]
    return [t.isoformat(sep=" ") for t in days.tz_localize(zone)]  # "offset"


@st.composite
def frames(draw: st.DrawFn, clean: bool) -> pd.DataFrame:
    """Valid-looking bars as text, then (unless `clean`) broken: columns, cells, dates, scales.
    A clean frame still varies what a good file may: date styles, offsets, extra columns."""
    n = draw(st.sampled_from([10, 12, 30, 60] if clean else [0, 1, 5, 9, 10, 12, 30, 60]))
    raw = make_prices(max(n, 1), seed=draw(st.integers(0, 3))).iloc[:n]
    start = draw(st.sampled_from(["2024-03-01", "2020-01-01"]))  # the first crosses DST
    days = pd.bdate_range(start, periods=n)
    styles = ["iso", "offset", "compact", "time"] + ([] if clean else ["slash", "epoch"])
    style = draw(st.sampled_from(styles))
    frame = raw.astype(object)
    frame["Date"] = _date_text(days, style, draw(st.sampled_from(ZONES)))
    for column in draw(st.lists(st.sampled_from(COLUMNS[1:]), max_size=0 if clean else 2)):
        if column in frame:
            frame[column] = (raw[column] * draw(st.sampled_from(SCALES))).astype(object)
    for extra in draw(st.lists(st.sampled_from(EXTRAS), max_size=2, unique=True)):
        frame[extra] = "x"
    if n and not clean:
        if draw(st.integers(0, 9)) == 0:  # pandas reads a column of True/False as bool
            cells = draw(st.sampled_from([BOOLEANS[:1], BOOLEANS[:2], BOOLEANS]))
            frame[draw(st.sampled_from(COLUMNS[1:]))] = [cells[i % len(cells)] for i in range(n)]
        for _ in range(draw(st.integers(0, 3))):
            row = draw(st.integers(0, n - 1))
            column = draw(st.sampled_from([*COLUMNS, *COLUMNS[1:]]))
            frame.loc[row, column] = draw(st.sampled_from(CELLS))
        if n > 1 and draw(st.integers(0, 4)) == 0:  # a repeated or an out-of-order date
            i = draw(st.integers(1, n - 1))
            frame.loc[i, "Date"] = frame.loc[i - draw(st.sampled_from([0, 1])), "Date"]
            if draw(st.booleans()):
                frame = frame.iloc[[*range(i), *range(i + 1, n), i]]
    kept = [c for c in frame.columns if c not in COLUMNS or clean or draw(st.integers(0, 11))]
    frame = frame[kept]
    frame.columns = [draw(spellings(c)) if c in COLUMNS else c for c in kept]
    if kept and not clean and draw(st.integers(0, 7)) == 0:  # a column twice, its cells copied
        i = draw(st.integers(0, len(kept) - 1))
        name = draw(spellings(kept[i])) if kept[i] in COLUMNS else kept[i]
        frame.insert(draw(st.integers(0, len(kept))), name, frame.iloc[:, i], True)
    return frame.iloc[:, draw(st.permutations(range(len(frame.columns))))]


@st.composite
def file_bytes(draw: st.DrawFn, clean: bool) -> bytes:
    """One price file as bytes: a clean frame, a broken one serialised oddly, or no CSV."""
    kind = (
        "clean" if clean else draw(st.sampled_from(["broken"] * 9 + ["empty", "binary", "header"]))
    )
    if kind == "empty":
        return b""
    if kind == "binary":
        return draw(st.binary(min_size=1, max_size=200))
    frame = draw(frames(clean))
    if kind == "header":
        frame = frame.iloc[:0]
    text = frame.to_csv(
        index=False,
        sep="," if clean else draw(st.sampled_from([",", ",", ",", ",", ",", ";", "\t"])),
        lineterminator=draw(st.sampled_from(["\n", "\r\n"])),
    )
    if not clean and draw(st.integers(0, 5)) == 0:  # a duplicated column name in the header
        header, _, body = text.partition("\n")
        text = f"{header},{header.split(',')[0]}\n{body}"
    encodings = ("utf-8", "utf-8-sig") if clean else ENCODINGS
    return text.encode(draw(st.sampled_from(encodings)), errors="replace")


@dataclass(frozen=True)
class PriceFolder:
    files: dict[str, bytes]  # file name -> content
    valid: bool  # clean bars, under a name that is TICKER's alone: the forecast must succeed
    # False: no --tickers, the folder scan picks them. Only where no skip warning can precede
    # an error line (the CLI prints warnings as they come): no skipped file beside TICKER's
    tickers_given: bool = True


@st.composite
def price_folders(draw: st.DrawFn) -> PriceFolder:
    """A csv folder for TICKER, valid about a third of the time."""
    name = draw(st.sampled_from([TICKER, TICKER.lower(), "Aaa"])) + draw(
        st.sampled_from([".csv", ".csv", ".CSV"])
    )
    if draw(st.integers(0, 9)) == 0:  # no ticker file at all: only names the scan skips
        name = draw(st.sampled_from(SKIPPED))
    clean = draw(st.integers(0, 2)) == 0
    files = {name: draw(file_bytes(clean))}
    extra = draw(st.sampled_from([None, None, None, None, *SKIPPED[:2], "aAa.csv", "BBB.csv"]))
    if extra and extra.lower() != name.lower():
        files[extra] = b"\x00\x05\x16\x07Mac OS X" if extra in SKIPPED else files[name]
    skipped = [n for n in files if n in SKIPPED]
    alone = "BBB.csv" not in files and (not skipped or len(skipped) == len(files))
    valid = clean and name not in SKIPPED and "aAa.csv" not in files
    return PriceFolder(files, valid, not alone or draw(st.booleans()))


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder
