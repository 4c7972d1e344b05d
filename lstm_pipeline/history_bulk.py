"""The forecast history's bulk reads and writes (history.py calls them): frames in and out of
SQL column by column, through the driver, without a Python object per row beyond the driver's
own tuple.

At 625k forecast rows (500 tickers x 250 days x 5 horizons) SQLAlchemy's per-row work costs
more than the database: binding a dict per row (parameters built and type-processed one by one)
took twice SQLite's own insert time, and Row objects plus pandas probing each of them took three
times the driver's fetch. So writes are one `executemany` of plain tuples in the driver's
paramstyle, keys deleted the same way; reads are one SELECT whose tuples are turned into numpy
columns at once, dates parsed in bulk from their ISO text. The SQL itself still comes from the
tables in history_schema.py (names quoted by the dialect), and everything runs on the caller's
SQLAlchemy connection, so transactions, locks and errors stay history.py's.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, String, Table, and_, bindparam, cast, delete, insert

# the driver's marker of a positional parameter, by DBAPI paramstyle; a driver of another style
# (none of the documented stores) is written through SQLAlchemy's statements, slower
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
# rows fetched or written per driver call: a 625k-row read took 30% less CPU in chunks of 50k
# than whole (the tuples stay in the CPU's caches and are freed as it goes); 10k was no faster
CHUNK_ROWS = 50_000


def replace_rows(
    conn: Connection, table: Table, key_columns: Sequence[str], frame: pd.DataFrame
) -> None:
    """Delete the rows of `table` under each distinct key (values of `key_columns`) of `frame`,
    then insert `frame`'s rows (its columns are `table`'s), inside the caller's transaction;
    CHUNK_ROWS rows per executemany."""
    keys = frame[list(key_columns)].drop_duplicates()
    delete_keys, insert_rows = _statements(conn, table, list(key_columns), list(frame.columns))
    for start in range(0, len(keys), CHUNK_ROWS):
        delete_keys(driver_rows(keys.iloc[start : start + CHUNK_ROWS], conn))
    for start in range(0, len(frame), CHUNK_ROWS):
        insert_rows(driver_rows(frame.iloc[start : start + CHUNK_ROWS], conn))


Executemany = Callable[[list[tuple[Any, ...]]], object]


def _statements(
    conn: Connection, table: Table, key_columns: list[str], columns: list[str]
) -> tuple[Executemany, Executemany]:
    """(delete the rows under keys, insert rows): each an executemany of plain tuples."""
    marker = _MARKERS.get(conn.dialect.paramstyle)
    if marker is None:  # another paramstyle: SQLAlchemy's statements, a dict per row
        match = and_(*(table.c[name] == bindparam(f"key_{name}") for name in key_columns))
        keys = [f"key_{name}" for name in key_columns]
        return (
            lambda rows: conn.execute(delete(table).where(match), _dicts(keys, rows)),
            lambda rows: conn.execute(insert(table), _dicts(columns, rows)),
        )
    quote = conn.dialect.identifier_preparer.quote
    name = conn.dialect.identifier_preparer.format_table(table)
    match_sql = " AND ".join(f"{quote(column)} = {marker}" for column in key_columns)
    names, markers = ", ".join(map(quote, columns)), ", ".join([marker] * len(columns))
    return (
        lambda rows: conn.exec_driver_sql(f"DELETE FROM {name} WHERE {match_sql}", rows),
        lambda rows: conn.exec_driver_sql(f"INSERT INTO {name} ({names}) VALUES ({markers})", rows),
    )


def _dicts(names: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in rows]


def driver_rows(frame: pd.DataFrame, conn: Connection) -> list[tuple[Any, ...]]:
    """`frame`'s rows as plain tuples the driver takes: NaN, NaT and None as NULL; datetime
    columns as ISO text on SQLite (how SQLAlchemy's Date stores them there), as
    `datetime.date` elsewhere. Built column by column (DataFrame.to_dict boxes every cell)."""
    columns = [_cells(frame[name], conn.dialect.name) for name in frame.columns]
    with _gc_paused():  # a million tuples: the cyclic collector would rescan them again and again
        return list(zip(*columns, strict=True))


def _cells(values: pd.Series, dialect: str) -> list[Any]:
    if values.dtype.kind == "M":
        days = values.to_numpy(dtype="datetime64[D]")
        cells = np.datetime_as_string(days) if dialect == "sqlite" else days.astype(object)
        cells = cells.astype(object)
    else:
        cells = values.to_numpy(dtype=object, copy=True)
    cells[values.isna().to_numpy()] = None
    return cells.tolist()  # numpy scalars become Python's, which every driver takes


def read_frame(conn: Connection, query: Any, dates: Sequence[str]) -> pd.DataFrame:
    """The rows of `query` (a SELECT of table columns) as a frame: the `dates` columns as
    datetime64 (read as ISO text, parsed at once), floats float64 with NaN for NULL, whole
    numbers int64, text as pandas' string dtype. Fetched CHUNK_ROWS at a time, each chunk made
    columns at once: the driver's tuples never all live together."""
    selected = list(query.selected_columns)
    sql, params = _driver_statement(conn, query, dates)
    frames = []
    cursor = conn.connection.cursor()  # the driver's: its tuples, no SQLAlchemy Row per row
    try:
        cursor.execute(sql, params)
        with _gc_paused():
            while rows := cursor.fetchmany(CHUNK_ROWS):
                frames.append(_frame(selected, list(zip(*rows, strict=True)), dates))
    finally:
        cursor.close()
    if not frames:
        return _frame(selected, [()] * len(selected), dates)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _driver_statement(conn: Connection, query: Any, dates: Sequence[str]) -> tuple[str, Any]:
    """`query` as the driver's SQL and parameters, the `dates` columns cast to text (SQLite
    keeps them as text; SQLAlchemy's Date would parse them one by one)."""
    as_text = query.with_only_columns(
        *(cast(c, String).label(c.name) if c.name in dates else c for c in query.selected_columns)
    )
    compiled = as_text.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    if compiled.positional:
        return str(compiled), tuple(params[name] for name in compiled.positiontup or ())
    return str(compiled), params


def _frame(selected: list[Any], columns: list[Sequence[Any]], dates: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.name: _column(c, cells, c.name in dates)
            for c, cells in zip(selected, columns, strict=True)
        }
    )


def _column(column: Any, cells: Sequence[Any], is_date: bool) -> Any:
    if is_date:
        return pd.to_datetime(np.asarray(cells, dtype=object), format="%Y-%m-%d")
    kind = column.type.python_type
    if kind is float:
        return np.asarray(cells, dtype=np.float64)  # None becomes NaN
    if kind is int:
        return np.asarray(cells, dtype=np.int64)
    return pd.array(cells, dtype="str")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while millions of tuples (which hold no cycles) are made:
    it would otherwise walk them all on every collection their allocation triggers."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
