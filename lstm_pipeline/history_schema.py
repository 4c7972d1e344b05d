"""The forecast history's tables and the migrations that build them (history.py uses them).

The schema changes only by migration steps: `MIGRATIONS[i]` brings a store from version `i` to
`i + 1`, each step once, in its own transaction, the version number written in the same
transaction (table `schema_version`). Nothing is ever dropped to change the schema. The tables
below are the latest schema, the one the queries use; a step that alters a table does so with
its own DDL (`ALTER TABLE ... ADD COLUMN`), and step 1 keeps creating version 1's tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)

from lstm_pipeline.errors import ForecastStoreError

Migration = Callable[[Connection], None]

NAME = 200  # model names, versions, tickers, run ids, calendars: generous VARCHAR lengths
SHORT = 32


def _key(name: str) -> Column[str]:
    return Column(name, String(NAME), primary_key=True)


def _floats(*names: str) -> list[Column[float]]:
    return [Column(name, Float) for name in names]  # NULL where a value is missing (NaN)


metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

# One row per forecast: model, version, ticker, day forecast from (`as_of`) and horizon step.
forecasts = Table(
    "forecasts",
    metadata,
    _key("model_name"),
    _key("model_version"),
    _key("ticker"),
    Column("as_of", Date, primary_key=True),
    Column("horizon", Integer, primary_key=True),
    Column("target_date", Date, nullable=False),
    Column("forecast", Float, nullable=False),
    *_floats("lower_95", "lower_80", "upper_80", "upper_95"),
    Column("last_close", Float, nullable=False),
    Column("run_id", String(NAME), nullable=False),
    Column("calendar", String(NAME)),
    *_floats("input_drift"),
    # every row of one model version, ordered by target date: what a score run reads
    Index("ix_forecasts_version_target", "model_name", "model_version", "target_date"),
)

# LIVE's scores: one row per (version, horizon, window, through), the whole curve
scores = Table(
    "scores",
    metadata,
    _key("model_name"),
    _key("model_version"),
    Column("horizon", Integer, primary_key=True),  # 0: every horizon pooled
    Column("window", String(SHORT), primary_key=True),  # "20", "60" or "live"
    Column("through", Date, primary_key=True),  # the last matured target date counted
    Column("days_live", Integer, nullable=False),
    Column("matured", Integer, nullable=False),
    *_floats("mae", "naive_mae", "mase", "direction", "base_rate"),
    *_floats("coverage_80", "coverage_95", "crps"),
)

# Every alert state recorded, in order: the last one of a (version, metric, window) is its state.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(NAME), nullable=False),
    Column("model_version", String(NAME), nullable=False),
    Column("metric", String(SHORT), nullable=False),
    Column("window", String(SHORT), nullable=False),
    Column("state", String(SHORT), nullable=False),
    Column("value", Float),
    Column("event_id", String(NAME)),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_alerts_model", "model_name", "id"),
)


def create_version_1(conn: Connection) -> None:
    """Version 1: the forecasts, scores and alerts tables."""
    metadata.create_all(conn, tables=[forecasts, scores, alerts])


MIGRATIONS: tuple[Migration, ...] = (create_version_1,)

# an arbitrary constant: the PostgreSQL advisory lock that serialises two processes' migrations
_MIGRATION_LOCK = 7_316_004_216


# on a connection about to write: history.py begins its transactions with the write lock
# (sqlite's BEGIN IMMEDIATE), so two writers queue instead of failing on the lock's upgrade
WRITING = {"lstm_pipeline_writes": True}


def migrate(engine: Engine, steps: Sequence[Migration] = MIGRATIONS) -> int:
    """Run the steps the store has not run yet, each in its own write transaction; the version
    reached. Two processes opening a new store at once: one migrates, the other sees it done."""
    with engine.connect() as conn:
        version = current_version(conn)
    for target, step in enumerate(steps, start=1):
        if version >= target:
            continue
        with engine.connect().execution_options(**WRITING) as conn, conn.begin():
            version = _locked_version(conn)
            if version < target:
                step(conn)
                _set_version(conn, version, target)
                version = target
    if version > len(steps):
        raise ForecastStoreError(
            f"schema version {version} is newer than this code's {len(steps)}: "
            "upgrade lstm-pipeline"
        )
    return version


def current_version(conn: Connection) -> int:
    """The store's schema version; 0 for a new (empty) one."""
    if not inspect(conn).has_table(schema_version.name):
        return 0
    return int(conn.execute(select(schema_version.c.version)).scalar() or 0)


def _locked_version(conn: Connection) -> int:
    """The store's schema version (0 for a new one), read under the migration lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    schema_version.create(conn, checkfirst=True)
    return current_version(conn)


def _set_version(conn: Connection, current: int, target: int) -> None:
    if current == 0:
        conn.execute(insert(schema_version).values(version=target))
    else:
        conn.execute(update(schema_version).values(version=target))
