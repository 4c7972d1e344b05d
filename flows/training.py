"""The training flow: fetch -> windows -> fit -> evaluate -> MLflow -> ONNX -> gate -> registry."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE

from flows import runners
from flows.artifacts import publish_training_summary
from flows.fetching import fetch_each
from flows.timings import Stopwatch
from lstm_pipeline import data, features, gate, pipeline, provenance, registry, splits
from lstm_pipeline.baseline_workers import baselines_ahead
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import describe_failures
from lstm_pipeline.runtime import make_runtime
from lstm_pipeline.tracking import Run, Store, owner_of_new_run, warm_up_model_logging

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def _as_task(fn: Callable[P, R]) -> Task[P, R]:
    """`fn` as a Prefect task of the same name. Stages take frames, tensors and models: no
    result caching on them."""
    return task(cache_policy=NO_CACHE)(fn)


# Each task is the library function of the same name, run as a task (one box in the UI).
build_window_sets = _as_task(features.build_window_sets)
start_run = _as_task(Store.start_run)
log_dataset = _as_task(Run.log_dataset)
train_model = _as_task(pipeline.train_model)
run_report = _as_task(pipeline.run_report)
log_report = _as_task(Run.log_report)
export_model = _as_task(pipeline.export_model)
judge = _as_task(registry.judge)
register_and_gate = _as_task(registry.register_and_gate)


def _warm_up(store: Store) -> None:
    """What the flow needs right after loading, made while loading waits on worker processes
    (a universe's files, or Dask's tasks): MLflow's SQL store (~0.7 s to import and open) and
    torch._dynamo, which torch.optim imports on an optimizer's first use (~0.6 s), and the
    list of installed packages that logging the model checks its requirements against (~0.9
    s). A failure here is left for the flow's own call to meet and report."""
    try:
        store.warm_up()
        warm_up_model_logging()
        import torch._dynamo  # noqa: F401
    except Exception:  # the flow's own call meets it again, and reports it
        log.debug("warm-up failed", exc_info=True)


@flow(
    name="lstm-train",
    flow_run_name=lambda: f"train-{date.today()}",
    log_prints=True,
    task_runner=runners.from_environment(),  # deployments: $LSTM_PIPELINE_DASK_ADDRESS
)
def train_flow(cfg: PipelineConfig = PipelineConfig()) -> dict[str, Any]:
    """Train on cfg.data's tickers, log the run, judge against the champion, register."""
    t = cfg.tracking
    clock = Stopwatch()
    store = Store.open(t.tracking_uri)
    # an absent device or a dead tracking server fails the job now, before any fetch or run
    make_runtime(cfg.train, cfg.model.hidden_size)
    store.ensure_reachable(t.experiment)
    warming = threading.Thread(target=_warm_up, args=(store,), name="warm-up", daemon=True)
    warming.start()
    with clock.stage("load"):
        # as run_train reckons them for the load it starts ahead (flows/commands.py)
        needed = splits.rows_needed(cfg.features)
        purpose = splits.split_purpose(cfg.features)
        prices, failures = fetch_each(cfg.data, "training", needed, purpose)
    warming.join()
    with clock.stage("windows"):
        windows = build_window_sets(prices, cfg.features)
        data_tags = pipeline.data_summary(prices, failures)
    with clock.stage("tracking"):
        owner = owner_of_new_run(store, t.experiment, t.model_name)  # this process ends the run
        run = start_run(
            store,
            t.experiment,
            provenance.run_name(cfg, date.today().isoformat()),
            provenance.run_params(cfg),
            provenance.run_tags(cfg, data_tags) | owner,
        )
    with run.closing():
        with clock.stage("tracking"):
            (sample, rows), source = pipeline.dataset_sample(prices), data.source_location(cfg.data)
            log_dataset(run, sample, rows, data_tags["data.sha256"], source, "training")

        def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
            run.log_metrics(metrics, step=epoch)

        # the evaluation's baselines, made on the core a small model's fit leaves free
        with baselines_ahead(cfg, windows, prices) as ahead:
            with clock.stage("calibration"):
                result = train_model(windows, cfg, on_epoch_end=log_epoch)
            # train_model less its epochs: setting up the fit and calibrating it
            clock.add("calibration", -result.epochs_seconds)
            clock.add("epochs", result.epochs_seconds)
            run.set_tags(
                {
                    "device": result.device,
                    "precision": result.precision,
                    "threads": str(result.threads),
                }
            )
            with clock.stage("evaluation"):
                report = run_report(cfg, result, windows, prices, data_tags, run.run_id, ahead)
        with clock.stage("tracking"):
            log_report(run, *report)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            cutoff = data_tags["data.cutoff"]
            with clock.stage("export"):
                onnx_path, example = export_model(result, windows, path, run.run_id, cutoff)
            # judged before anything is registered
            intervals = gate.IntervalScores.from_metrics(report.metrics)
            with clock.stage("gate"):
                decision = judge(
                    store, t.model_name, onnx_path, windows["val"], t.promotion_margin, intervals
                )
                version, promotion = register_and_gate(
                    run,
                    t.model_name,
                    onnx_path,
                    example,
                    decision,
                    report.model_card,
                    windows["val"],
                    t.promotion_margin,
                )
    print(promotion.reason)
    publish_training_summary(
        run,
        t.model_name,
        version,
        report.metrics,
        promotion.promoted,
        promotion.reason,
        report.texts["metrics/test_by_ticker.csv"],
    )
    return {
        "run_id": run.run_id,
        "model_name": t.model_name,
        "model_version": version,
        "promoted": promotion.promoted,
        "alias": promotion.alias,
        "reason": promotion.reason,
        "gate": promotion.gate,  # gate.compared false: the champion could not be scored
        "metrics": {k: _plain(v) for k, v in report.metrics.items()},
        "skipped": describe_failures(failures),  # tickers trained without, with the reason
        "timings": clock.rounded(),  # seconds per stage
    }


def _plain(value: float) -> float | int:
    return (
        int(value) if float(value).is_integer() and abs(value) < 2**53 else float(np.float64(value))
    )
