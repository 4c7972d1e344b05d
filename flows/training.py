"""The training flow: fetch -> windows -> fit -> evaluate -> MLflow -> ONNX -> registry."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.fetching import each_ticker, fetch
from lstm_pipeline import data, pipeline, tracking
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import describe_failures, require_survivors
from lstm_pipeline.features import WindowSet, build_window_sets, rows_needed, split_purpose
from lstm_pipeline.train import FitResult

# Tasks take frames, tensors and models: no result caching on them.
step = task(cache_policy=NO_CACHE)


@step
def make_windows(prices: dict[str, pd.DataFrame], cfg: PipelineConfig) -> dict[str, WindowSet]:
    return build_window_sets(prices, cfg.features)


@step
def open_run(cfg: PipelineConfig, tags: dict[str, str]) -> str:
    return tracking.start_run(
        cfg.tracking.tracking_uri,
        cfg.tracking.experiment,
        f"train-{date.today()}",
        cfg.flat(),
        tags,
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
    result: FitResult, windows: dict[str, WindowSet], cfg: PipelineConfig, run_id: str
) -> dict[str, float]:
    evaluation = pipeline.evaluate_model(result, windows)
    uri = cfg.tracking.tracking_uri
    tracking.log_metrics(uri, run_id, evaluation.metrics)
    for name, figure in pipeline.evaluation_figures(result, windows, evaluation).items():
        tracking.log_figure(uri, run_id, figure, name)  # type: ignore[arg-type]
    return evaluation.metrics


@step
def export_and_register(
    result: FitResult,
    windows: dict[str, WindowSet],
    cfg: PipelineConfig,
    run_id: str,
    cutoff: str,
) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path, example = pipeline.export_model(
            result, windows, Path(tmp) / "model.onnx", run_id, cutoff
        )
        from lstm_pipeline.predict import OnnxForecaster

        forecast = OnnxForecaster(path).predict(example)
        return tracking.log_onnx_model(
            cfg.tracking.tracking_uri, run_id, path, example, forecast, cfg.tracking.model_name
        )


@step
def promote(cfg: PipelineConfig, version: str, run_id: str, val_mase: float) -> tracking.Promotion:
    return tracking.promote_if_better(
        cfg.tracking.tracking_uri, cfg.tracking.model_name, version, run_id, val_mase
    )


@flow(name="lstm-train", flow_run_name=lambda: f"train-{date.today()}", log_prints=True)
def train_flow(cfg: PipelineConfig = PipelineConfig()) -> dict[str, Any]:
    """Train on cfg.data's tickers, log the run, register the ONNX model, gate the champion."""
    needed = rows_needed(cfg.features)
    prices, failures = each_ticker(fetch, cfg.data, needed, split_purpose(cfg.features))
    require_survivors(prices, failures, cfg.data.min_tickers, "training")
    windows = make_windows(prices, cfg)
    data_tags = pipeline.data_summary(prices, failures)
    run_id = open_run(cfg, data_tags)
    uri = cfg.tracking.tracking_uri
    try:
        log_training_data(cfg, run_id, prices, data_tags["data.sha256"])
        result = fit_model(windows, cfg, run_id)
        tracking.set_tags(uri, run_id, {"device": result.device})
        metrics = evaluate(result, windows, cfg, run_id)
        version = export_and_register(result, windows, cfg, run_id, data_tags["data.cutoff"])
        decision = promote(cfg, version, run_id, metrics["val_mase"])
    except BaseException as exc:
        tracking.end_run(uri, run_id, "FAILED", f"{type(exc).__name__}: {exc}")
        raise
    tracking.end_run(uri, run_id)
    print(decision.reason)
    return {
        "run_id": run_id,
        "model_name": cfg.tracking.model_name,
        "model_version": version,
        "promoted": decision.promoted,
        "alias": decision.alias,
        "reason": decision.reason,
        "metrics": {k: _plain(v) for k, v in metrics.items()},
        "skipped": describe_failures(failures),  # tickers trained without, with the reason
    }


def _plain(value: float) -> float | int:
    return (
        int(value) if float(value).is_integer() and abs(value) < 2**53 else float(np.float64(value))
    )
