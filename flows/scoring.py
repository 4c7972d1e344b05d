"""The score flow: the forecast history against the closes that followed, as live scores in the
history, MLflow curves, a Prefect table, and degraded / recovered events on a change of state.

A thin flow over the library: history.py reads and writes the store, live.py scores and judges,
tracking/monitoring.py logs the curves, flows/alerts.py emits the events. A re-run on the same
data adds nothing: scores are replaced on their key, MLflow steps are logged once, and an event
goes out only when a window's state differs from the last one recorded.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import alerts, runners
from flows.fetching import fetch_each
from flows.timings import Stopwatch
from lstm_pipeline import live
from lstm_pipeline.config import MODEL_NAME, DataConfig, MonitorConfig
from lstm_pipeline.errors import InputError, describe_failures, scrub_uri
from lstm_pipeline.history import ForecastHistory, parse_store_url, store_url

if TYPE_CHECKING:
    from collections.abc import Sequence

SCORES_KEY = "live-scores"
CLOSE = "Close"  # load_prices adjusts it by Adj Close / Close, as training reads it
MAX_TABLE_ROWS = 500  # latest rows of the most recent versions: a glance, the store has all
SHOWN = ("mae", "naive_mae", "mase", "direction", "base_rate", "coverage_80", "coverage_95", "crps")


@task(cache_policy=NO_CACHE)
def read_forecasts(store: ForecastHistory, model_name: str) -> pd.DataFrame:
    return store.forecasts(model_name)


score = task(cache_policy=NO_CACHE)(live.live_scores)
record_scores = task(cache_policy=NO_CACHE)(ForecastHistory.record_scores)


@task(cache_policy=NO_CACHE)
def log_scores(tracking_uri: str | None, scores: pd.DataFrame) -> dict[str, str]:
    """Each version's scores to its monitoring run (one Store for all): {version: run id}."""
    from lstm_pipeline import tracking  # mlflow, only once there is something to log

    store = tracking.Store.open(tracking_uri)
    store.ensure_reachable()
    runs = {}
    for name, version in scores[list(live.KEYS)].drop_duplicates().itertuples(index=False):
        runs[str(version)] = tracking.log_live_scores(store, name, version, scores)
    return runs


@task(cache_policy=NO_CACHE)
def alert(store: ForecastHistory, verdict: live.Verdict) -> dict[str, Any]:
    """The event of one changed verdict, then its state recorded with the event's id (a run
    killed in between emits it again next time: an event is never lost)."""
    event_id = alerts.emit_verdict(verdict)
    v = verdict
    store.record_alert(
        v.model_name, v.model_version, v.metric, v.window, v.state, v.value, event_id
    )
    return {**_verdict_dict(v), "event_id": event_id}


@flow(
    name="lstm-score",
    flow_run_name=lambda: f"score-{date.today()}",
    log_prints=True,
    task_runner=runners.from_environment(),
)
def score_flow(
    data: DataConfig = DataConfig(),
    model_name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    forecast_store: str | None = None,  # None: $LSTM_PIPELINE_FORECAST_STORE, else the default
    monitor: MonitorConfig = MonitorConfig(),
    tickers: list[str] | None = None,  # None: every ticker the history holds
) -> dict[str, Any]:
    """Score every matured forecast of `model_name` (each version it holds) against the closes
    of `data`'s source, record and publish the scores, and alert on each change of state."""
    clock = Stopwatch()
    url = store_url(forecast_store)
    if not store_exists(url):  # a score before any forecast: nothing to read, nothing made
        line = f"nothing to score yet: no forecast history at {scrub_uri(url)}"
        return _nothing(scrub_uri(url), model_name, 0, clock, line)
    with ForecastHistory.open(url) as store:
        with clock.stage("history"):
            forecasts = read_forecasts(store, model_name)
        if forecasts.empty:
            line = f"nothing to score yet: no forecasts of {model_name} in {store.shown}"
            return _nothing(store.shown, model_name, 0, clock, line)
        forecasts = forecasts[forecasts["ticker"].isin(chosen_tickers(forecasts, tickers))]
        with clock.stage("load"):
            cfg = data.model_copy(update={"tickers": tuple(forecasts["ticker"].unique())})
            prices, failures = fetch_each(cfg, "scoring", why="realised closes")
            closes = {ticker: frame[CLOSE] for ticker, frame in prices.items()}
        with clock.stage("score"):
            scores = score(forecasts, closes, monitor.windows)
        if scores.empty:
            line = nothing_matured(forecasts, closes)
            return _nothing(store.shown, model_name, len(forecasts), clock, line, failures)
        with clock.stage("record"):
            rows = record_scores(store, scores)
        with clock.stage("mlflow"):
            runs = log_scores(tracking_uri, scores)
        publish_scores(scores)
        with clock.stage("alerts"):
            verdicts = live.degradation(scores, monitor)
            changed = live.changes(verdicts, store.alert_states(model_name))
            events = [alert(store, verdict) for verdict in changed]
    latest = latest_scores(scores)
    lines = summary(model_name, latest, events)
    print(lines)  # the run's log in the Prefect UI; the command prints it too
    return {
        "model_name": model_name,
        "store": store.shown,
        "forecasts": len(forecasts),
        "versions": sorted(runs),
        "matured": matured_by_version(latest),
        "rows": rows,
        "monitoring_runs": runs,
        "latest": _records(latest),
        "verdicts": [_verdict_dict(v) for v in verdicts],
        "changes": events,
        "failed": describe_failures(failures),
        "timings": clock.rounded(),
        "summary": lines,
    }


def chosen_tickers(forecasts: pd.DataFrame, tickers: Sequence[str] | None) -> list[str]:
    """The history's tickers, or those of `tickers` among them; InputError when none is."""
    held = sorted(forecasts["ticker"].unique())
    if tickers is None:
        return held
    wanted = {t.upper() for t in tickers}
    chosen = [t for t in held if t in wanted]
    if not chosen:
        raise InputError(
            f"--tickers {' '.join(tickers)}: none has forecasts in the history "
            f"(it holds {', '.join(held[:10])}{', ...' if len(held) > 10 else ''})"
        )
    return chosen


def nothing_matured(forecasts: pd.DataFrame, closes: dict[str, pd.Series]) -> str:
    """The one line for a history none of whose forecasts has its realised close yet."""
    first = pd.to_datetime(forecasts["target_date"]).min().date()
    bars = [series.index.max() for series in closes.values() if len(series)]
    last = pd.Timestamp(max(bars)).date().isoformat() if bars else "none"
    return (
        f"nothing to score yet: {len(forecasts)} forecasts, none matured "
        f"(first target date {first}, last bar {last})"
    )


def store_exists(url: str) -> bool:
    """False for a SQLite file that is not there yet (opening it would create it); a server's
    database is assumed to exist (opening it says otherwise)."""
    parsed = parse_store_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    return Path(parsed.database).exists()


def _nothing(
    shown: str,
    model_name: str,
    forecasts: int,
    clock: Stopwatch,
    line: str,
    failures: dict[str, BaseException] | None = None,
) -> dict[str, Any]:
    """The result of a run with nothing to score (`line` says why), shaped as any other's."""
    print(line)
    return {
        "model_name": model_name,
        "store": shown,
        "forecasts": forecasts,
        "versions": [],
        "matured": {},
        "rows": 0,
        "monitoring_runs": {},
        "latest": [],
        "verdicts": [],
        "changes": [],
        "failed": describe_failures(failures or {}),
        "timings": clock.rounded(),
        "summary": line,
    }


def latest_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The last `through` of each (version, horizon, window): today's numbers."""
    keys = [*live.KEYS, "horizon", "window"]
    latest = scores.sort_values("through").groupby(keys, sort=False).tail(1)
    return latest.sort_values(keys, kind="stable").reset_index(drop=True)


def matured_by_version(latest: pd.DataFrame) -> dict[str, int]:
    """Forecasts matured so far per version: the pooled `live` window's count."""
    pooled = latest[(latest["horizon"] == live.POOLED) & (latest["window"] == live.LIVE)]
    return {str(v): int(n) for v, n in zip(pooled["model_version"], pooled["matured"], strict=True)}


def publish_scores(scores: pd.DataFrame) -> None:
    """The latest row per (version, horizon, window) as the `live-scores` table artifact, the
    most recent versions first, at most MAX_TABLE_ROWS rows."""
    latest = latest_scores(scores)
    order = latest.groupby("model_version")["through"].transform("max")
    shown = latest.assign(_order=order).sort_values("_order", ascending=False, kind="stable")
    shown = shown.drop(columns="_order").head(MAX_TABLE_ROWS)
    rows = _records(shown)
    versions = ", ".join(f"v{v}" for v in dict.fromkeys(shown["model_version"]))
    create_table_artifact(
        rows,
        key=SCORES_KEY,
        description=(
            f"live scores of {shown['model_name'].iloc[0]} {versions} through "
            f"{pd.to_datetime(shown['through']).max().date()}: horizon 0 pools every horizon; "
            f"windows of matured trading days and `live` since the version's first forecast"
        ),
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-able dicts: dates as ISO text, scores to 4 decimals, NaN as None."""
    out = frame.round(dict.fromkeys(SHOWN, 4)).astype(object)
    out["through"] = pd.to_datetime(frame["through"]).dt.strftime("%Y-%m-%d")
    out = out.where(out.notna(), None)
    for column in ("horizon", "days_live", "matured"):
        out[column] = frame[column].astype(int).tolist()
    return cast(list[dict[str, Any]], out.to_dict("records"))


def _verdict_dict(v: live.Verdict) -> dict[str, Any]:
    return {"model_version": v.model_version, **alerts.verdict_payload(v), "state": v.state}


def summary(model_name: str, latest: pd.DataFrame, events: list[dict[str, Any]]) -> str:
    """One line per version (pooled, since live), one per change of state."""
    pooled = latest[(latest["horizon"] == live.POOLED) & (latest["window"] == live.LIVE)]
    lines = [
        f"{model_name} v{row.model_version}: {row.matured} forecasts matured through "
        f"{str(row.through)[:10]} ({row.days_live} days live): MASE {row.mase:.3f}, "
        f"direction {row.direction:.1%} vs base rate {row.base_rate:.1%}"
        for row in pooled.itertuples()
    ]
    lines += [
        f"{model_name} v{e['model_version']}: {e['metric']} over {e['window']} days is "
        f"{e['state']} ({e['value']}, threshold {e['threshold']}; event {e['event_id']})"
        for e in events
    ]
    return "\n".join(lines)
