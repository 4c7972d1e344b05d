"""The forecast history: every forecast run's rows, live scores and alert states in one SQL
database, through SQLAlchemy Core (an embedded SQLite file by default, PostgreSQL for a team).

A forecast run replaces the rows of its own (model, version, ticker, as_of) and nothing else, in
one transaction: a re-run day is idempotent, other days and other versions are never deleted.
Dates come back as datetime64 (midnight, no time zone), like a price frame's index. The schema
changes only by migrations (history_schema.py). Every failure to reach, open, lock or write the
database is a ForecastStoreError naming the URL with its credentials scrubbed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    create_engine,
    event,
    insert,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from lstm_pipeline import history_schema as schema
from lstm_pipeline.config import DEFAULT_FORECAST_STORE, FORECAST_STORE_ENV
from lstm_pipeline.errors import (
    ForecastStoreError,
    InputError,
    one_line,
    remember_credentials,
    scrub_uri,
)
from lstm_pipeline.history_bulk import read_frame, replace_rows
from lstm_pipeline.tracking.download import REGISTRY_SCHEME, is_registry_uri  # no mlflow

# WAL: a reader never blocks the writer. synchronous=NORMAL: under WAL a commit is not synced
# to disk, only each checkpoint; the database stays consistent when the process is killed or
# crashes (the WAL is replayed), only a power cut can lose the last commits (their forecast
# runs are re-run). The WAL shrinks back to journal_size_limit after each checkpoint instead of
# keeping the size of the largest write; a 64 MiB page cache holds a bulk write's index pages.
SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    f"journal_size_limit={64 * 2**20}",
    f"cache_size=-{64 * 2**10}",  # negative: KiB
)
BUSY_TIMEOUT_S = 5.0  # a locked SQLite store is waited for this long, then the write fails
CONNECT_TIMEOUT_S = 10  # a PostgreSQL server that does not answer
# PostgreSQL without a driver named means psycopg 3, the one installed (SQLAlchemy's default,
# psycopg2, is not)
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg"}

FORECAST_COLUMNS = [c.name for c in schema.forecasts.columns if c.name != "model_name"]
SCORE_COLUMNS = [c.name for c in schema.scores.columns]
_DATES = ("as_of", "target_date", "through")
_FORECAST_KEY = ("ticker", "as_of")  # within one model version: the rows a re-run replaces


def store_url(url: str | None = None) -> str:
    """The store to use: `url`, else $LSTM_PIPELINE_FORECAST_STORE, else the default (a SQLite
    file relative to the working directory); its credentials remembered, for scrub to mask."""
    chosen = url or os.environ.get(FORECAST_STORE_ENV) or DEFAULT_FORECAST_STORE
    remember_credentials(chosen)
    return chosen


def parse_store_url(url: str) -> URL:
    """`url` as SQLAlchemy reads it; InputError (one line, credentials scrubbed) when it is none."""
    try:
        parsed = make_url(url)
        parsed.get_dialect()  # an unknown database name fails here, not after the forecast
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise InputError(
            f"forecast store {scrub_uri(url)} is not a usable SQLAlchemy URL ({one_line(exc)}); "
            f"e.g. {DEFAULT_FORECAST_STORE} or postgresql://user@host/db"
        ) from None
    if parsed.drivername in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername])
    return parsed


def model_name_of(model_uri: str) -> str:
    """The registered name in `models:/NAME@ALIAS` or `models:/NAME/VERSION`; a `.onnx` file's
    name without its suffix (its rows have model_version "file")."""
    if is_registry_uri(model_uri):
        return model_uri.removeprefix(REGISTRY_SCHEME).split("@")[0].split("/")[0]
    return Path(model_uri).stem


def record_forecast_run(
    table: pd.DataFrame, model_uri: str, url: str | None = None
) -> dict[str, Any]:
    """One forecast run's rows into the store at `url` (see store_url): `{"store": url with
    credentials scrubbed, "rows": rows written}`."""
    with ForecastHistory.open(store_url(url)) as history:
        rows = history.record_forecasts(table, model_name_of(model_uri))
    return {"store": history.shown, "rows": rows}


class ForecastHistory:
    """One database of forecasts, scores and alert states (see the module's docstring)."""

    def __init__(self, engine: Engine, shown: str) -> None:
        self.engine = engine
        self.shown = shown  # the URL as a person may see it: credentials scrubbed

    @classmethod
    def open(cls, url: str, steps: tuple[schema.Migration, ...] = schema.MIGRATIONS) -> Self:
        """The store at `url`, its schema brought to the latest version (`steps`) by migration;
        a SQLite file's folder is created."""
        parsed = parse_store_url(url)
        history = cls(_engine_for(parsed, scrub_uri(url)), scrub_uri(url))
        with history._failing("open"):
            schema.migrate(history.engine, steps)
        return history

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _failing(self, action: str) -> Iterator[None]:
        """Database errors as one ForecastStoreError line naming the store and the action."""
        driver_error = self.engine.dialect.loaded_dbapi.Error  # from the driver's own cursor
        try:
            yield
        except (sa_exc.DBAPIError, sa_exc.TimeoutError, driver_error, OSError) as exc:
            raise ForecastStoreError(
                f"forecast store {self.shown}: {action} failed: {_reason(exc)}"
            ) from None

    @contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        """One write transaction: all of it is committed, or none."""
        with self._failing(action), self.engine.connect() as conn:
            with conn.execution_options(**schema.WRITING).begin():
                yield conn

    def record_forecasts(self, table: pd.DataFrame, model_name: str) -> int:
        """The rows of one forecast run (predict.forecast_table's columns; `input_drift` and
        `calendar` kept when present), replacing every row of the same (model_name,
        model_version, ticker, as_of), in one transaction. The rows written."""
        frame = _forecast_frame(table, model_name)
        key_columns = ("model_name", "model_version", *_FORECAST_KEY)
        with self._writing("recording forecasts") as conn:
            _replace(conn, schema.forecasts, key_columns, frame)
        return len(frame)

    def forecasts(self, model_name: str, model_version: str | None = None) -> pd.DataFrame:
        """Every forecast of `model_name` (one version, if given): FORECAST_COLUMNS and
        `model_name`, ordered by version, ticker, as_of and horizon."""
        t = schema.forecasts
        query = select(t).where(_matching(t, model_name, model_version))
        query = query.order_by(t.c.model_version, t.c.ticker, t.c.as_of, t.c.horizon)
        return self._read(query, "reading forecasts")

    def record_scores(self, scores: pd.DataFrame) -> int:
        """LIVE's scores, replacing those of the same (model_name, model_version, horizon,
        window, through), in one transaction. The rows written."""
        frame = _dated(scores.reindex(columns=SCORE_COLUMNS))
        key_columns = [c.name for c in schema.scores.primary_key]
        with self._writing("recording scores") as conn:
            _replace(conn, schema.scores, key_columns, frame)
        return len(frame)

    def scores(self, model_name: str, model_version: str | None = None) -> pd.DataFrame:
        """The scores of `model_name` (one version, if given), SCORE_COLUMNS, in key order."""
        t = schema.scores
        query = select(t).where(_matching(t, model_name, model_version))
        return self._read(query.order_by(*schema.scores.primary_key), "reading scores")

    def record_alert(
        self,
        model_name: str,
        model_version: str,
        metric: str,
        window: str,
        state: str,
        value: float | None,
        event_id: str | None,
    ) -> None:
        """A new state of one (model version, metric, window), and the event that said so."""
        row = {
            "model_name": model_name,
            "model_version": model_version,
            "metric": metric,
            "window": window,
            "state": state,
            "value": _number(value),
            "event_id": event_id,
            "recorded_at": datetime.now(UTC),
        }
        with self._writing("recording an alert") as conn:
            conn.execute(insert(schema.alerts), [row])

    def alert_states(self, model_name: str) -> dict[tuple[str, str, str], str]:
        """The last recorded state of each (model_version, metric, window) of `model_name`."""
        t = schema.alerts
        query = select(t.c.model_version, t.c.metric, t.c.window, t.c.state)
        query = query.where(t.c.model_name == model_name).order_by(t.c.id)
        with self._failing("reading alerts"), self.engine.connect() as conn:
            found = conn.execute(query).all()
        return {(version, metric, window): state for version, metric, window, state in found}

    def _read(self, query: Any, action: str) -> pd.DataFrame:
        with self._failing(action), self.engine.connect() as conn:
            return read_frame(conn, query, _DATES)


def _engine_for(url: URL, shown: str) -> Engine:
    """An engine for `url`: a SQLite file (its folder made) that waits BUSY_TIMEOUT_S for a
    lock, in WAL mode (a reader never blocks the writer); a server that must answer in
    CONNECT_TIMEOUT_S."""
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
            event.listen(engine, "connect", _sqlite_connected)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        if backend == "postgresql":
            return create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        return create_engine(url)
    except (OSError, ImportError) as exc:  # a folder that cannot be made, a missing driver
        raise ForecastStoreError(f"forecast store {shown}: open failed: {_reason(exc)}") from None


def _sqlite_connected(dbapi_connection: Any, _record: Any) -> None:
    # the driver's own transaction handling off: _sqlite_begin says when and how to begin
    dbapi_connection.isolation_level = None
    for pragma in SQLITE_PRAGMAS:
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _sqlite_begin(conn: Connection) -> None:
    writes = conn.get_execution_options().get(next(iter(schema.WRITING)))
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _reason(exc: BaseException) -> str:
    """The driver's own first line (not SQLAlchemy's, which repeats the statement)."""
    cause = getattr(exc, "orig", None) or exc
    line = one_line(cause)
    if "database is locked" in line:
        return f"{line} (another process is writing; waited {BUSY_TIMEOUT_S:g} s)"
    return line


def _matching(table: Table, model_name: str, model_version: str | None) -> Any:
    match = table.c.model_name == model_name
    return match if model_version is None else and_(match, table.c.model_version == model_version)


def _forecast_frame(table: pd.DataFrame, model_name: str) -> pd.DataFrame:
    frame = _dated(table.reindex(columns=FORECAST_COLUMNS).assign(model_name=model_name))
    for column in ("model_version", "run_id"):
        frame[column] = frame[column].astype(str)
    return frame


def _dated(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its date columns as datetime64 (they may come as datetime.date)."""
    dates = {name: pd.to_datetime(frame[name]) for name in _DATES if name in frame.columns}
    return frame.assign(**dates)


# Measured on PostgreSQL 15: a delete per key (executemany) takes 0.4 s for 10,000 keys once
# the table has statistics, but 130 s right after a bulk load, before autovacuum analyzed it
# (every delete scans the table); deleting 1,000 keys per `IN (...)` took 8 s either way.
ANALYZE_AFTER_ROWS = 10_000


def _replace(
    conn: Connection, table: Table, key_columns: Sequence[str], frame: pd.DataFrame
) -> None:
    """Delete the rows under `frame`'s keys (values of `key_columns`), then insert its rows,
    executemany both, inside the caller's transaction."""
    replace_rows(conn, table, key_columns, frame)
    if len(frame) >= ANALYZE_AFTER_ROWS and conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {table.name}"))  # the next run's deletes use the index


def _number(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
