"""A model version's live scores as MLflow curves: one monitoring run per version.

The run (`live-v<version>`) sits in the experiment of the version's training run, nested under
that run in the UI, and carries one metric per score, window and horizon:
`live_<metric>_<window>` over all horizons pooled (the rows with horizon 0), and
`live_<metric>_<window>_h<k>` per horizon, each at step = trading days the version has been
live, stamped with the last matured target date it counts (so the UI's wall-time axis reads
as dates). Each call logs only the steps above the last one a metric has, so scoring the same
day twice adds nothing; between calls the run is FINISHED (MLflow's client logs to a finished
run as to a running one).
"""

from __future__ import annotations

import pandas as pd
from mlflow.entities import Metric
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from lstm_pipeline.errors import ModelNotFoundError
from lstm_pipeline.live import POOLED, SCORES
from lstm_pipeline.tracking.store import Store

MONITORING_TAG = "lstm-pipeline.monitoring"  # "live" on every monitoring run
MODEL_NAME_TAG = "lstm-pipeline.model_name"
MODEL_VERSION_TAG = "lstm-pipeline.model_version"
TRAINING_RUN_TAG = "lstm-pipeline.training_run_id"
PARENT_TAG = "mlflow.parentRunId"  # the UI shows the monitoring run under its training run
METRICS = (*SCORES, "matured")  # the scores frame's columns logged as curves


def log_live_scores(store: Store, model_name: str, model_version: str, scores: pd.DataFrame) -> str:
    """Log the scores of `model_name` version `model_version` (rows of other versions are
    left out) to its monitoring run, created when absent; the run's id."""
    version = str(model_version)
    rows = scores[
        (scores["model_name"] == model_name) & (scores["model_version"].astype(str) == version)
    ]
    run_id = monitoring_run(store, model_name, version)
    points = metric_points(rows)
    logged = last_steps(store, run_id)
    fresh = points[points["step"] > points["key"].map(logged).fillna(-1).astype("int64")]
    metrics = [
        Metric(key, float(value), int(stamp), int(step))
        for key, step, value, stamp in fresh.itertuples(index=False)
    ]
    # one batch at a time, each a transaction, in step order per metric: a run killed between
    # batches leaves every metric's curve whole up to its last step, and the next call goes on
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        store.client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    store.client.set_terminated(run_id, "FINISHED")  # and its end time says when it last scored
    return run_id


def metric_points(rows: pd.DataFrame) -> pd.DataFrame:
    """The scores as MLflow points: `key`, `step` (days live), `value`, `timestamp` (ms of the
    last matured target date), sorted by key and step; missing values (no intervals) left out."""
    latest = rows.sort_values("through").drop_duplicates(
        ["horizon", "window", "days_live"], keep="last"
    )
    long = latest.melt(
        id_vars=["horizon", "window", "days_live", "through"],
        value_vars=[name for name in METRICS if name in latest.columns],
        var_name="metric",
    ).dropna(subset=["value"])
    horizon = long["horizon"].astype(int)
    per_horizon = ("_h" + horizon.astype(str)).where(horizon != POOLED, "")
    epoch = pd.Timestamp("1970-01-01")
    stamp = (pd.to_datetime(long["through"]) - epoch) // pd.Timedelta(milliseconds=1)
    points = pd.DataFrame(
        {
            "key": "live_" + long["metric"] + "_" + long["window"].astype(str) + per_horizon,
            "step": long["days_live"].astype(int),
            "value": long["value"].astype(float),
            "timestamp": stamp.astype("int64"),
        }
    )
    return points.sort_values(["key", "step"], kind="stable").reset_index(drop=True)


def last_steps(store: Store, run_id: str) -> dict[str, int]:
    """The highest step each metric of the run has (MLflow keeps it as the latest metric)."""
    data = store.client.get_run(run_id).data.to_proto()
    return {metric.key: metric.step for metric in data.metrics}


def monitoring_run(store: Store, model_name: str, version: str) -> str:
    """The id of the version's monitoring run, created (FINISHED, tagged) when absent."""
    training_run = training_run_of(store, model_name, version)
    if training_run is None:  # a `.onnx` file, or a version the registry does not know
        experiment_id = store.experiment_id(model_name)
    else:
        experiment_id = store.client.get_run(training_run).info.experiment_id
    wanted = {MONITORING_TAG: "live", MODEL_NAME_TAG: model_name, MODEL_VERSION_TAG: version}
    # a few runs (one per version) carry the monitoring tag: the others are told apart here,
    # not in the search string, where a name would need MLflow's quoting
    found = [
        run
        for run in store.client.search_runs(
            [experiment_id], f"tags.`{MONITORING_TAG}` = 'live'", order_by=["attributes.start_time"]
        )
        if wanted.items() <= run.data.tags.items()
    ]
    if found:
        return str(found[0].info.run_id)  # the first, should two scorers have raced
    tags = dict(wanted)
    if training_run is not None:
        tags |= {TRAINING_RUN_TAG: training_run, PARENT_TAG: training_run}
    tags["mlflow.note.content"] = (
        f"Live scores of {model_name} version {version}: forecasts scored against the closes "
        "that followed, at step = trading days live."
    )
    run = store.client.create_run(experiment_id, run_name=f"live-v{version}", tags=tags)
    store.client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)


def training_run_of(store: Store, model_name: str, version: str) -> str | None:
    """The run that trained registry version `version` of `model_name`, else None."""
    if not version.isdigit():
        return None
    try:
        found = store.existing_version(model_name, version)
    except ModelNotFoundError:
        return None
    return str(found.run_id) if found.run_id else None
