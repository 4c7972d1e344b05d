"""The backtest flow: walk-forward refits, one nested MLflow run per fold under a parent run."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.fetching import fetch_each
from flows.progress import wait_counting
from lstm_pipeline import backtest, pipeline, provenance
from lstm_pipeline.config import PipelineConfig, with_trigger
from lstm_pipeline.tracking import Run, Store, owner_of_new_run


@task(cache_policy=NO_CACHE, task_run_name="fold-{fold}")
def run_fold(
    prices: dict[str, pd.DataFrame], cfg: PipelineConfig, fold: int, folds: int, fold_days: int
) -> backtest.FoldResult:
    return backtest.run_fold(prices, cfg, fold, folds, fold_days)


@task(cache_policy=NO_CACHE)
def log_fold(cfg: PipelineConfig, parent: Run, result: backtest.FoldResult) -> str:
    """The fold's scores as a run nested under `parent`; its id."""
    tags = {
        "mlflow.parentRunId": parent.run_id,
        "trigger": "backtest",
        "fold.first_day": result.first_day,
        "fold.last_day": result.last_day,
    }
    name = f"fold-{result.fold}"
    run = parent.store.start_run(cfg.tracking.experiment, name, {"fold": result.fold}, tags)
    run.log_metrics(result.metrics)
    run.end()
    return run.run_id


@flow(name="lstm-backtest", flow_run_name=lambda: f"backtest-{date.today()}")
def backtest_flow(cfg: PipelineConfig, folds: int = 4, fold_days: int = 126) -> dict[str, Any]:
    """Refit on expanding history `folds` times, each scored on the next `fold_days` days."""
    prices, failures = fetch_each(cfg.data, "backtest")
    backtest.check_folds(prices, cfg.features, folds, fold_days)  # before a store or run exists
    store = Store.open(cfg.tracking.tracking_uri)
    cfg = with_trigger(cfg, "backtest")
    params = provenance.run_params(cfg) | {"backtest.folds": folds, "backtest.fold_days": fold_days}
    tags = provenance.run_tags(cfg, pipeline.data_summary(prices, failures))
    tags |= owner_of_new_run(store, cfg.tracking.experiment)
    parent = store.start_run(cfg.tracking.experiment, f"backtest-{date.today()}", params, tags)
    with parent.closing():
        # all folds at once: on a Dask runner each is fitted in its own worker process
        futures = [run_fold.submit(prices, cfg, k, folds, fold_days) for k in range(folds)]
        wait_counting(futures, "folds")
        results = [future.result() for future in futures]
        for result in results:
            log_fold(cfg, parent, result)
        overall, table = backtest.pooled_scores(results)
        parent.log_metrics(overall)
        parent.log_text(table.to_csv(index=False), "backtest/scores.csv")
    return {
        "run_id": parent.run_id,
        "folds": [
            {
                "fold": r.fold,
                "first_day": r.first_day,
                "last_day": r.last_day,
                **{
                    k: r.metrics[k]
                    for k in (
                        "test_mae",
                        "naive_test_mae",
                        "test_mase",
                        "test_directional_accuracy",
                    )
                },
            }
            for r in results
        ],
        "metrics": overall,
        "table": backtest.format_table(table, overall),
    }
