"""The tuning flow: Optuna trials as Prefect tasks, one nested MLflow run per trial."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.fetching import fetch_each
from lstm_pipeline import files, pipeline, provenance, tune
from lstm_pipeline.config import PipelineConfig, with_trigger
from lstm_pipeline.tracking import Run, Store, owner_of_new_run


@task(cache_policy=NO_CACHE, task_run_name="trial-{ticket.number}")
def run_trial(ticket: tune.TrialTicket, prices: dict[str, pd.DataFrame]) -> tune.TrialOutcome:
    return tune.run_trial(ticket, prices)


@task(cache_policy=NO_CACHE)
def log_trial(cfg: PipelineConfig, parent: Run, outcome: tune.TrialOutcome) -> str:
    """The trial's epochs and scores as a run nested under `parent`; its id."""
    tags = {"mlflow.parentRunId": parent.run_id, "trigger": "tune", "trial.state": outcome.state}
    run = parent.store.start_run(
        cfg.tracking.experiment,
        f"trial-{outcome.number}",
        provenance.run_params(outcome.config),
        tags,
    )
    for epoch, metrics in enumerate(outcome.history, start=1):
        run.log_metrics(metrics, step=epoch)
    run.log_metrics(outcome.metrics)
    run.end("FINISHED" if outcome.state == "COMPLETE" else "KILLED")
    return run.run_id


def run_trials(
    study: optuna.Study,
    storage: str,
    cfg: PipelineConfig,
    prices: dict[str, pd.DataFrame],
    trials: int,
    parallel: int,
    parent: Run,
) -> dict[int, tune.TrialOutcome]:
    """Ask `parallel` trials at a time, run them as tasks (on a Dask runner in as many worker
    processes), tell the study each outcome and log it as a nested run."""
    outcomes: dict[int, tune.TrialOutcome] = {}
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
    return outcomes


@flow(name="lstm-tune", flow_run_name=lambda: f"tune-{date.today()}")
def tune_flow(
    cfg: PipelineConfig,
    trials: int = 20,
    parallel: int = 1,
    output: str = "tuned.yaml",
    storage: str | None = None,
) -> dict[str, Any]:
    """Search SEARCH_SPACE around `cfg`, `parallel` trials at a time; write the best config.

    `storage` is the Optuna storage URL every worker reaches (e.g. PostgreSQL for a remote
    cluster); None keeps the study in a temporary sqlite file, removed at the end.
    """
    files.check_writable(output, "output")  # fails now, not after hours of trials
    prices, failures = fetch_each(cfg.data, "tuning")
    store = Store.open(cfg.tracking.tracking_uri)
    cfg = with_trigger(cfg, "tune")
    params = provenance.run_params(cfg) | {"tune.trials": trials, "tune.parallel": parallel}
    tags = provenance.run_tags(cfg, pipeline.data_summary(prices, failures))
    with tune.study_storage(storage) as url:
        study = tune.create_study(url, f"tune-{uuid.uuid4().hex[:8]}", cfg.train.seed)
        tags["optuna.study"] = study.study_name
        tags |= owner_of_new_run(store, cfg.tracking.experiment)
        parent = store.start_run(cfg.tracking.experiment, f"tune-{date.today()}", params, tags)
        with parent.closing():
            outcomes = run_trials(study, url, cfg, prices, trials, parallel, parent)
            best = outcomes[study.best_trial.number]
            best_params = study.best_trial.params  # read while the storage still exists
            path = tune.write_config(best.config, output)
            parent.log_text(path.read_text(), "tune/best_config.yaml")
            parent.log_metrics(
                {
                    "best_val_mase": study.best_value,
                    "pruned_trials": sum(o.state == "PRUNED" for o in outcomes.values()),
                },
            )
    return {
        "run_id": parent.run_id,
        "best_trial": best.number,
        "best_val_mase": best.value,
        "best_params": best_params,
        "output": str(path),
        "trials": [
            {"number": o.number, "state": o.state, "val_mase": o.value}
            for o in sorted(outcomes.values(), key=lambda o: o.number)
        ],
    }
