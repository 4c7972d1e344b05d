"""The training flow: fetch -> windows -> fit -> evaluate -> MLflow -> ONNX -> gate -> registry."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import runners
from flows.artifacts import publish_training_summary
from flows.fetching import fetch_each
from lstm_pipeline import data, pipeline, provenance, registry, tracking
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import describe_failures
from lstm_pipeline.features import WindowSet, build_window_sets, rows_needed, split_purpose
from lstm_pipeline.gate import GateDecision
from lstm_pipeline.runtime import make_runtime
from lstm_pipeline.train import FitResult

# Tasks take frames, tensors and models: no result caching on them.
step = task(cache_policy=NO_CACHE)


@step
def make_windows(prices: dict[str, pd.DataFrame], cfg: PipelineConfig) -> dict[str, WindowSet]:
    return build_window_sets(prices, cfg.features)


@step
def open_run(cfg: PipelineConfig, data_tags: dict[str, str], owner: dict[str, str]) -> str:
    return tracking.start_run(
        cfg.tracking.tracking_uri,
        cfg.tracking.experiment,
        provenance.run_name(cfg, date.today().isoformat()),
        provenance.run_params(cfg),
        provenance.run_tags(cfg, data_tags) | owner,
    )


@step
def log_training_data(
    cfg: PipelineConfig, run_id: str, prices: dict[str, pd.DataFrame], digest: str
) -> None:
    tracking.log_dataset(
        cfg.tracking.tracking_uri,
        run_id,
        pipeline.training_frame(prices),
        digest,
        source=data.source_location(cfg.data),
        context="training",
    )


@step
def fit_model(windows: dict[str, WindowSet], cfg: PipelineConfig, run_id: str) -> FitResult:
    def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
        tracking.log_metrics(cfg.tracking.tracking_uri, run_id, metrics, step=epoch)

    return pipeline.train_model(windows, cfg, on_epoch_end=log_epoch)


@step
def evaluate(
    cfg: PipelineConfig,
    result: FitResult,
    windows: dict[str, WindowSet],
    data_tags: dict[str, str],
    run_id: str,
) -> pipeline.RunReport:
    return pipeline.run_report(cfg, result, windows, data_tags, run_id)


@step
def log_report(cfg: PipelineConfig, run_id: str, report: pipeline.RunReport) -> None:
    tracking.log_report(cfg.tracking.tracking_uri, run_id, *report)


@step
def export(
    result: FitResult, windows: dict[str, WindowSet], folder: str, run_id: str, cutoff: str
) -> tuple[Path, np.ndarray]:
    return pipeline.export_model(result, windows, Path(folder) / "model.onnx", run_id, cutoff)


@step
def judge(cfg: PipelineConfig, onnx_path: Path, val: WindowSet) -> GateDecision:
    t = cfg.tracking
    return registry.judge(t.tracking_uri, t.model_name, onnx_path, val, t.promotion_margin)


@step
def register(
    cfg: PipelineConfig,
    run_id: str,
    model: tuple[Path, np.ndarray],
    decision: GateDecision,
    card: str,
    val: WindowSet,
) -> tuple[str, registry.Promotion]:
    t = cfg.tracking
    return registry.register_and_gate(
        t.tracking_uri, t.model_name, run_id, *model, decision, card, val, t.promotion_margin
    )


@flow(
    name="lstm-train",
    flow_run_name=lambda: f"train-{date.today()}",
    log_prints=True,
    task_runner=runners.from_environment(),  # deployments: $LSTM_PIPELINE_DASK_ADDRESS
)
def train_flow(cfg: PipelineConfig = PipelineConfig()) -> dict[str, Any]:
    """Train on cfg.data's tickers, log the run, judge against the champion, register."""
    # an absent device or a dead tracking server fails the job now, before any fetch or run
    make_runtime(cfg.train, cfg.model.hidden_size)
    tracking.ensure_reachable(cfg.tracking.tracking_uri, cfg.tracking.experiment)
    needed = rows_needed(cfg.features)
    prices, failures = fetch_each(cfg.data, "training", needed, split_purpose(cfg.features))
    windows = make_windows(prices, cfg)
    data_tags = pipeline.data_summary(prices, failures)
    uri = cfg.tracking.tracking_uri
    owner = tracking.owner_of_new_run(uri, cfg.tracking.experiment)  # this process ends it
    run_id = open_run(cfg, data_tags, owner)
    with tracking.closing_run(uri, run_id):
        log_training_data(cfg, run_id, prices, data_tags["data.sha256"])
        result = fit_model(windows, cfg, run_id)
        tracking.set_tags(
            uri,
            run_id,
            {
                "device": result.device,
                "precision": result.precision,
                "threads": str(result.threads),
            },
        )
        report = evaluate(cfg, result, windows, data_tags, run_id)
        log_report(cfg, run_id, report)
        with tempfile.TemporaryDirectory() as folder:
            model = export(result, windows, folder, run_id, data_tags["data.cutoff"])
            decision = judge(cfg, model[0], windows["val"])  # before anything is registered
            version, promotion = register(
                cfg, run_id, model, decision, report.model_card, windows["val"]
            )
    print(promotion.reason)
    t = cfg.tracking
    publish_training_summary(
        uri, t.model_name, run_id, version, report.metrics, promotion.promoted, promotion.reason
    )
    return {
        "run_id": run_id,
        "model_name": cfg.tracking.model_name,
        "model_version": version,
        "promoted": promotion.promoted,
        "alias": promotion.alias,
        "reason": promotion.reason,
        "metrics": {k: _plain(v) for k, v in report.metrics.items()},
        "skipped": describe_failures(failures),  # tickers trained without, with the reason
    }


def _plain(value: float) -> float | int:
    return (
        int(value) if float(value).is_integer() and abs(value) < 2**53 else float(np.float64(value))
    )
