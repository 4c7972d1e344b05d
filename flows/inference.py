"""The batch forecast flow: registry model -> latest windows -> onnxruntime -> forecast file.

Imports no torch (a test proves it): a forecast job needs onnxruntime, pandas and the registry.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import runners
from flows.artifacts import publish_forecasts
from flows.fetching import fetch_each, transient_only
from flows.timings import Stopwatch
from lstm_pipeline import history, predict, tracking
from lstm_pipeline.config import DEFAULT_FORECAST_OUTPUT, DEFAULT_MODEL_URI, DataConfig
from lstm_pipeline.errors import describe_failures
from lstm_pipeline.tracking import ResolvedModel, ahead, is_registry_uri

if TYPE_CHECKING:
    from lstm_pipeline.tracking import Store

# a registry that does not answer at once is retried; a model that is not there is not
resolve_model = task(
    retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE, retry_condition_fn=transient_only
)(tracking.resolve_model)


@task(cache_policy=NO_CACHE)
def open_model(model: ResolvedModel, model_uri: str) -> predict.OnnxForecaster:
    registry = is_registry_uri(model_uri)
    name = f"model {model_uri} (version {model.version})" if registry else None  # else its file
    return predict.OnnxForecaster(model.path, name=name)


@task(cache_policy=NO_CACHE)
def forecast(
    forecaster: predict.OnnxForecaster,
    model: ResolvedModel,
    prices: dict[str, pd.DataFrame],
    calendars: dict[str, str],
) -> pd.DataFrame:
    return predict.forecast_table(forecaster, prices, model.version, model.run_id, calendars)


# after the file is written: a store that fails leaves today's file in place (exit 1)
record = task(cache_policy=NO_CACHE)(history.record_forecast_run)


@task(cache_policy=NO_CACHE)
def write(table: pd.DataFrame, output: str) -> str:
    return str(predict.write_forecasts(table, output))


def _resolve(model_uri: str, tracking_uri: str | None) -> ResolvedModel:
    found = ahead.take(model_uri, tracking_uri)  # the command's head start, if it made one
    if found is not None:
        return found
    store: Store | None = None
    if is_registry_uri(model_uri):  # only then is mlflow imported
        store = tracking.Store.open(tracking_uri)
        store.ensure_reachable()  # fail in seconds, not after MLflow's retries
    return resolve_model(model_uri, store)


@flow(
    name="lstm-forecast",
    flow_run_name=lambda: f"forecast-{date.today()}",
    log_prints=True,
    task_runner=runners.from_environment(),  # deployments: $LSTM_PIPELINE_DASK_ADDRESS
)
def forecast_flow(
    data: DataConfig = DataConfig(),
    model_uri: str = DEFAULT_MODEL_URI,
    output: str = DEFAULT_FORECAST_OUTPUT,
    tracking_uri: str | None = None,
    forecast_store: str | None = None,  # None: $LSTM_PIPELINE_FORECAST_STORE, else the default
) -> dict[str, Any]:
    """Forecast each ticker's next `horizon` trading days with the model at `model_uri`.

    Tickers that fail to load are left out and listed under "failed"; the file is written for
    the others. With none left, nothing is written and the failure is raised.
    """
    predict.check_output(output)  # a bad name fails now, not after the forecast
    clock = Stopwatch()
    with clock.stage("model"):
        model = _resolve(model_uri, tracking_uri)
        forecaster = open_model(model, model_uri)
    with clock.stage("load"):
        window = forecaster.window  # the last window is all a forecast needs
        keep = predict.rows_read(forecaster)  # and input drift's last span, where there is one
        prices, failures = fetch_each(data, "the forecast", window, "one input window", keep)
    with clock.stage("forecast"):
        table = forecast(forecaster, model, prices, data.calendars)
    with clock.stage("write"):
        path = write(table, output)
        publish_forecasts(table, path)
    with clock.stage("history"):
        recorded = record(table, model_uri, forecast_store)
    intervals = "with" if forecaster.quantile_levels else "without"
    print(
        f"wrote {len(table)} forecasts {intervals} 80%/95% intervals to {path} "
        f"(model version {model.version})"
    )
    return {
        "output": path,
        "rows": len(table),
        "model_version": model.version,
        "run_id": model.run_id,
        "model_uri": model_uri,
        "history": recorded,  # {"store": its URL, credentials scrubbed, "rows": N}
        "failed": describe_failures(failures),
        "timings": clock.rounded(),  # seconds per stage
    }
