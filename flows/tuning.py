"""The tuning flow: Optuna trials as Prefect tasks, one nested MLflow run per trial."""

from __future__ import annotations

import tempfile
import uuid
from datetime import date
from typing import Any

import pandas as pd
from optuna.trial import TrialState
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.fetching import each_ticker, fetch
from lstm_pipeline import pipeline, provenance, tracking, tune
from lstm_pipeline.config import PipelineConfig, with_trigger
from lstm_pipeline.errors import require_survivors


@task(cache_policy=NO_CACHE, task_run_name="trial-{ticket.number}")
def run_trial(ticket: tune.TrialTicket, prices: dict[str, pd.DataFrame]) -> tune.TrialOutcome:
    return tune.run_trial(ticket, prices)


@task(cache_policy=NO_CACHE)
def log_trial(cfg: PipelineConfig, parent_id: str, outcome: tune.TrialOutcome) -> str:
    uri = cfg.tracking.tracking_uri
    tags = {"mlflow.parentRunId": parent_id, "trigger": "tune", "trial.state": outcome.state}
    run_id = tracking.start_run(
        uri,
        cfg.tracking.experiment,
        f"trial-{outcome.number}",
        provenance.run_params(outcome.config),
        tags,
    )
    for epoch, metrics in enumerate(outcome.history, start=1):
        tracking.log_metrics(uri, run_id, metrics, step=epoch)
    tracking.log_metrics(uri, run_id, outcome.metrics)
    tracking.end_run(uri, run_id, "FINISHED" if outcome.state == "COMPLETE" else "KILLED")
    return run_id


@flow(name="lstm-tune", flow_run_name=lambda: f"tune-{date.today()}")
def tune_flow(
    cfg: PipelineConfig,
    trials: int = 20,
    parallel: int = 1,
    output: str = "tuned.yaml",
    storage: str | None = None,
) -> dict[str, Any]:
    """Search SEARCH_SPACE around `cfg`, `parallel` trials at a time; write the best config."""
    prices, failures = each_ticker(fetch, cfg.data)
    require_survivors(prices, failures, cfg.data.min_tickers, "tuning")
    storage = storage or f"sqlite:///{tempfile.mkdtemp(prefix='lstm-tune-')}/optuna.db"
    study = tune.create_study(storage, f"tune-{uuid.uuid4().hex[:8]}", cfg.train.seed)
    uri = cfg.tracking.tracking_uri
    cfg = with_trigger(cfg, "tune")
    params = provenance.run_params(cfg) | {"tune.trials": trials, "tune.parallel": parallel}
    tags = provenance.run_tags(cfg, pipeline.data_summary(prices, failures))
    tags["optuna.study"] = study.study_name
    parent = tracking.start_run(uri, cfg.tracking.experiment, f"tune-{date.today()}", params, tags)
    outcomes: dict[int, tune.TrialOutcome] = {}
    with tracking.closing_run(uri, parent):
        while len(outcomes) < trials:
            batch = min(parallel, trials - len(outcomes))
            tickets = [tune.ask(study, storage, cfg) for _ in range(batch)]
            for future in [run_trial.submit(ticket, prices) for ticket in tickets]:
                outcome = future.result()
                outcomes[outcome.number] = outcome
                if outcome.state == "PRUNED":
                    study.tell(outcome.number, state=TrialState.PRUNED)
                else:
                    study.tell(outcome.number, outcome.value)
                log_trial(cfg, parent, outcome)
        best = outcomes[study.best_trial.number]
        path = tune.write_config(best.config, output)
        tracking.log_text(uri, parent, path.read_text(), "tune/best_config.yaml")
        tracking.log_metrics(
            uri,
            parent,
            {
                "best_val_mase": study.best_value,
                "pruned_trials": sum(o.state == "PRUNED" for o in outcomes.values()),
            },
        )
    return {
        "run_id": parent,
        "best_trial": best.number,
        "best_val_mase": study.best_value,
        "best_params": study.best_trial.params,
        "output": str(path),
        "trials": [
            {"number": o.number, "state": o.state, "val_mase": o.value}
            for o in sorted(outcomes.values(), key=lambda o: o.number)
        ],
    }
