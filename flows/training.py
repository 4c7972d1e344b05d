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

from flows.fetching import fetch
from lstm_pipeline import pipeline, tracking
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.features import WindowSet, build_window_sets
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
    prices = {ticker: fetch(ticker, cfg.data) for ticker in cfg.data.tickers}
    windows = make_windows(prices, cfg)
    data_tags = pipeline.data_summary(prices)
    run_id = open_run(cfg, data_tags)
    uri = cfg.tracking.tracking_uri
    try:
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
    }


def _plain(value: float) -> float | int:
    return (
        int(value) if float(value).is_integer() and abs(value) < 2**53 else float(np.float64(value))
    )
