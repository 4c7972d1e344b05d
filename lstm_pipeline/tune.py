"""Hyper-parameter search with Optuna: a search space over the pipeline config, trials that
prune on validation loss, and the best config written as a YAML file for `train --config`.

Trials are addressed by (storage, study name, trial number) so any process that can reach
the storage can run one: that is what lets a distributed task runner spread them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml

from lstm_pipeline.config import OPTUNA_STORAGE_ENV, PipelineConfig
from lstm_pipeline.errors import remember_credentials
from lstm_pipeline.features import build_window_sets
from lstm_pipeline.files import write_atomic
from lstm_pipeline.pipeline import evaluate_model, train_model

# section.key -> how to draw it; ranges around the defaults that are cheap enough on a CPU
SEARCH_SPACE: dict[str, tuple[str, Any]] = {
    "features.window": ("categorical", [20, 40, 60, 90]),
    "model.hidden_size": ("categorical", [16, 32, 64, 128]),
    "model.num_layers": ("int", (1, 3)),
    "model.dropout": ("float", (0.0, 0.5)),
    "train.lr": ("log", (1e-4, 1e-2)),
    "train.batch_size": ("categorical", [64, 128, 256, 512]),
}


@contextmanager
def study_storage(url: str | None) -> Iterator[str]:
    """`url`, else $LSTM_PIPELINE_OPTUNA_STORAGE (where the CLI puts a URL with a password),
    else a temporary sqlite file (removed on exit): enough for one machine, threads or local
    worker processes. A remote cluster needs a URL every worker reaches."""
    url = url or os.environ.get(OPTUNA_STORAGE_ENV)
    remember_credentials(url)  # optuna's and SQLAlchemy's errors may quote it
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="lstm-tune-") as folder:
        yield f"sqlite:///{folder}/optuna.db"


def _pruner() -> optuna.pruners.BasePruner:
    # from epoch 2 on, prune a trial whose val loss is worse than the median of earlier
    # trials at the same epoch
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)


def create_study(storage: str, name: str, seed: int) -> optuna.Study:
    """A minimising study (val MASE). Only this process samples: trials get fixed configs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines say the same
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=_pruner(),
        load_if_exists=True,
    )


def suggest(trial: optuna.Trial, base: PipelineConfig) -> PipelineConfig:
    """`base` with every SEARCH_SPACE key drawn for this trial."""
    tree = base.model_dump()
    for dotted, (kind, spec) in SEARCH_SPACE.items():
        section, key = dotted.split(".")
        if kind == "categorical":
            value = trial.suggest_categorical(dotted, spec)
        elif kind == "int":
            value = trial.suggest_int(dotted, *spec)
        else:
            value = trial.suggest_float(dotted, *spec, log=kind == "log")
        tree[section][key] = value
    return PipelineConfig.model_validate(tree)


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: str  # "COMPLETE" or "PRUNED"
    config: PipelineConfig
    value: float | None  # val MASE, None when pruned
    history: list[dict[str, float]]
    metrics: dict[str, float]


@dataclass(frozen=True)
class TrialTicket:
    """Everything a worker needs to run one asked trial: where the study lives and the config."""

    storage: str
    study_name: str
    number: int  # the trial's number in its study
    config: PipelineConfig


def ask(study: optuna.Study, storage: str, base: PipelineConfig) -> TrialTicket:
    """A new trial with its config drawn here, where the study's seeded sampler lives."""
    trial = study.ask()
    return TrialTicket(storage, study.study_name, trial.number, suggest(trial, base))


def run_trial(ticket: TrialTicket, prices: dict[str, pd.DataFrame]) -> TrialOutcome:
    """Train one trial's config, reporting val loss each epoch so the pruner can stop it."""
    storage = optuna.storages.RDBStorage(ticket.storage)  # the URLs study_storage hands out
    study = optuna.load_study(storage=storage, study_name=ticket.study_name, pruner=_pruner())
    # optuna.Trial, which reports and prunes, takes the storage's id of the trial: the
    # storage's public lookup finds it by study and trial number
    study_id = storage.get_study_id_from_name(ticket.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, ticket.number)
    trial = optuna.Trial(study, trial_id)
    cfg, trial_number = ticket.config, ticket.number
    history: list[dict[str, float]] = []

    def report(epoch: int, metrics: dict[str, float]) -> None:
        history.append(metrics)
        trial.report(metrics["val_loss"], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"val_loss {metrics['val_loss']:.4f} at epoch {epoch}")

    windows = build_window_sets(prices, cfg.features)
    try:
        result = train_model(windows, cfg, on_epoch_end=report)
    except optuna.TrialPruned:
        return TrialOutcome(trial_number, "PRUNED", cfg, None, history, {})
    metrics = evaluate_model(result, windows, prices).metrics
    return TrialOutcome(trial_number, "COMPLETE", cfg, metrics["val_mase"], history, metrics)


def tuned_overrides(cfg: PipelineConfig) -> dict[str, dict[str, Any]]:
    """The config sections a tuning run owns (features, model, train) as a YAML-ready tree."""
    tree = cfg.model_dump(mode="json")
    return {section: tree[section] for section in ("features", "model", "train")}


def write_config(cfg: PipelineConfig, path: str | Path) -> Path:
    """Write the tuned sections as YAML (atomically), loadable by `train --config`."""
    text = "# written by `lstm-pipeline tune`: the best trial's config\n" + yaml.safe_dump(
        tuned_overrides(cfg), sort_keys=False
    )
    write_atomic(path, lambda tmp: tmp.write_text(text))
    return Path(path)
