"""The subcommands behind `lstm-pipeline`: config from the parsed options, the flow, a summary.

Flows are imported inside each handler, so `forecast` never imports torch.
"""

from __future__ import annotations

import argparse
import gc
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a command runs: --help stays fast
    from lstm_pipeline.config import DataConfig, PipelineConfig
    from lstm_pipeline.tracking import Store

HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """Defaults, then the --config file, then the options given (an option left out leaves the
    file's value alone), with a tracking URI's credentials moved out of what flows are given."""
    from lstm_pipeline.config import build_config, option_overrides
    from lstm_pipeline.provenance import without_credentials

    cfg = build_config(getattr(args, "config", None), **option_overrides(vars(args)))
    return without_credentials(cfg)


def _model_uri(args: argparse.Namespace, cfg: PipelineConfig) -> str:
    """--model-uri, else the champion of the configured model name."""
    from lstm_pipeline.config import champion_uri

    return args.model_uri or champion_uri(cfg.tracking.model_name)


def collect_from_now() -> None:
    """Garbage collection back on, for objects made from now on: the console script turns it
    off while a command imports its flow (flows/cli.py entry_point), and what the imports made
    is frozen, never walked again. A no-op where collection is on (main called in-process)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


@contextmanager
def _without_heartbeats() -> Iterator[None]:
    """Prefect's flow-run heartbeats off, unless PREFECT_FLOWS_HEARTBEAT_FREQUENCY asks for
    them. They let an automation mark a run whose process vanished; a command's own process
    ends its run itself (Ctrl-C included), and their thread sleeps in 1 s steps that the run's
    end waits out: up to a second of every command, a third of a small forecast. Deployments
    that `serve` runs keep them."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if HEARTBEAT_ENV in os.environ:
        yield
        return
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def _on_runner(flow: Any, args: argparse.Namespace) -> Callable[..., Any]:
    """`flow` with the task runner the options (else $LSTM_PIPELINE_DASK_ADDRESS) ask for, and
    a Prefect API to run on (a temporary server that dies with this process, if none is set),
    run without heartbeats."""
    collect_from_now()  # the flow's modules are imported
    from flows.runners import from_environment
    from flows.temporary_server import use_tied_server

    runner = from_environment(args.task_runner, args.dask_address)  # bad input: before a server
    use_tied_server()
    configured = flow.with_options(task_runner=runner)

    def run(*parameters: Any) -> Any:
        with _without_heartbeats():
            return configured(*parameters)

    return run


def run_fetch(args: argparse.Namespace) -> dict[str, Any]:
    from flows.fetching import fetch_flow

    cfg = pipeline_config(args)
    result = _on_runner(fetch_flow, args)(cfg.data)
    for ticker, info in result["tickers"].items():
        print(f"{ticker}: {info['rows']} rows {info['first']}..{info['last']} -> {info['path']}")
    return result


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    from lstm_pipeline.splits import rows_needed, split_purpose

    cfg = pipeline_config(args)
    needed, purpose = rows_needed(cfg.features), split_purpose(cfg.features)  # the flow's
    with _loading_ahead(args, cfg.data, needed, purpose):
        from flows.training import train_flow

        result = _on_runner(train_flow, args)(cfg)
    print(format_training(result))
    return result


def _loading_ahead(
    args: argparse.Namespace, data: DataConfig, min_rows: int, purpose: str
) -> AbstractContextManager[None]:
    """The load of data's tickers that the flow will run on worker processes, started now on
    the core the flow's imports leave idle (lstm_pipeline/loading.py `ahead`); a Dask runner
    loads on its own workers, so nothing is started for one."""
    from flows.runners import threads_asked
    from lstm_pipeline import loading

    if not threads_asked(args.task_runner, args.dask_address):
        return nullcontext()
    return loading.ahead(data, min_rows, purpose)


def _require_count(option: str, value: int, maximum: int) -> None:
    """InputError unless 1 <= value <= maximum: a typo such as 10**25 folds is bad input, not a
    hang, nor a flow parameter Prefect's database cannot store (it holds 64-bit integers)."""
    from lstm_pipeline.errors import InputError

    if not 1 <= value <= maximum:
        raise InputError(f"{option} {value} must be from 1 to {maximum:,}")


def run_backtest(args: argparse.Namespace) -> dict[str, Any]:
    _require_count("--folds", args.folds, 1_000)
    _require_count("--fold-days", args.fold_days, 100_000)
    cfg = pipeline_config(args)
    from flows.backtest import backtest_flow

    result = _on_runner(backtest_flow, args)(cfg, args.folds, args.fold_days)
    for fold in result["folds"]:
        print(
            f"fold {fold['fold']}: {fold['first_day']}..{fold['last_day']} MASE "
            f"{fold['test_mase']:.4f}, direction {fold['test_directional_accuracy']:.1%}"
        )
    m = result["metrics"]
    print(
        f"pooled over {len(result['folds'])} folds (run {result['run_id']}): MASE "
        f"{m['test_mase']:.4f}, direction {m['test_directional_accuracy']:.1%} vs base rate "
        f"{m['test_direction_base_rate']:.1%}\n{result['table']}"
    )
    return result


def run_tune(args: argparse.Namespace) -> dict[str, Any]:
    _require_count("--trials", args.trials, 100_000)
    _require_count("--parallel", args.parallel, 1_024)
    cfg = pipeline_config(args)
    from flows.tuning import tune_flow
    from lstm_pipeline.config import OPTUNA_STORAGE_ENV
    from lstm_pipeline.provenance import secret_to_env

    # a URL with a password reaches the flow through the environment, not as a parameter
    storage = secret_to_env(args.optuna_storage, OPTUNA_STORAGE_ENV)
    result = _on_runner(tune_flow, args)(cfg, args.trials, args.parallel, args.output, storage)
    for trial in result["trials"]:
        score = f"val MASE {trial['val_mase']:.4f}" if trial["val_mase"] is not None else "pruned"
        print(f"trial {trial['number']}: {score}")
    print(
        f"best trial {result['best_trial']} (val MASE {result['best_val_mase']:.4f}): "
        f"{result['best_params']}\nwrote {result['output']} (use: train --config "
        f"{result['output']})"
    )
    return result


def format_training(result: dict[str, Any]) -> str:
    """The run's headline numbers, model beside naive."""
    m = result["metrics"]
    h = max(int(k.rsplit("_h", 1)[1]) for k in m if k.startswith("test_mae_h"))
    lines = [
        f"run {result['run_id']}: {result['model_name']} v{result['model_version']} "
        f"-> @{result['alias']} ({result['reason']})",
        f"  test MAE {m['test_mae']:.4f} vs naive {m['naive_test_mae']:.4f}: MASE "
        f"{m['test_mase']:.4f} (val MASE {m['val_mase']:.4f}; horizons 1..{h}); vs drift "
        f"{m['test_mase_drift']:.4f}",
        f"  direction right {m['test_directional_accuracy']:.1%} vs base rate "
        f"{m['test_direction_base_rate']:.1%}",
    ]
    if "test_coverage_80" in m:
        lines.append(
            f"  intervals: 80% covers {m['test_coverage_80']:.1%}, 95% covers "
            f"{m['test_coverage_95']:.1%}; CRPS {m['test_crps']:.1f} bp, skill "
            f"{m['test_crpss_rw']:+.1%} vs rw, {m['test_crpss_ewma']:+.1%} vs ewma"
        )
    lines.append(
        f"  best epoch {m['best_epoch']} of {m['stopped_epoch']}, "
        f"{m['train_windows_per_s']:.0f} training windows/s"
    )
    return "\n".join(lines)


def run_forecast(args: argparse.Namespace) -> dict[str, Any]:
    from lstm_pipeline.tracking import ahead

    cfg = pipeline_config(args)
    model_uri = _model_uri(args, cfg)
    tracking_uri = cfg.tracking.tracking_uri
    store = _forecast_store(args)
    ahead.start(model_uri, tracking_uri)  # on the other core, while Prefect and the flow start
    from flows.inference import forecast_flow

    flow = _on_runner(forecast_flow, args)
    result = flow(cfg.data, model_uri, args.output, tracking_uri, store)
    print(
        f"wrote {result['rows']} forecasts to {result['output']} "
        f"(model version {result['model_version']}, {model_uri}); recorded "
        f"{result['history']['rows']} rows in {result['history']['store']}"
    )
    return result


def run_score(args: argparse.Namespace) -> dict[str, Any]:
    """Live scores of --model-name's forecasts (default: the config's model name; a model
    forecast from a .onnx file is recorded under its file's name without the suffix)."""
    cfg = pipeline_config(args)
    store = _forecast_store(args)
    from flows.scoring import score_flow

    flow = _on_runner(score_flow, args)
    tickers = list(cfg.data.tickers) if args.tickers else None  # else the history's
    result = flow(
        cfg.data, cfg.tracking.model_name, cfg.tracking.tracking_uri, store, cfg.monitor, tickers
    )
    print(result["summary"])
    return result


def _forecast_store(args: argparse.Namespace) -> str | None:
    """--forecast-store checked (bad input before any work), for a flow parameter: None when it
    holds credentials, which then reach the flow through $LSTM_PIPELINE_FORECAST_STORE."""
    from lstm_pipeline.config import FORECAST_STORE_ENV
    from lstm_pipeline.history import parse_store_url, store_url
    from lstm_pipeline.provenance import secret_to_env

    parse_store_url(store_url(args.forecast_store))
    return secret_to_env(args.forecast_store, FORECAST_STORE_ENV)


def run_serve(args: argparse.Namespace) -> dict[str, Any]:
    from flows import deploy, runners
    from lstm_pipeline import predict
    from lstm_pipeline.history import ForecastHistory, model_name_of, store_url
    from lstm_pipeline.tracking import Store

    collect_from_now()  # a process that serves for days must collect
    # Every check before the server is contacted: a bad value must not register anything.
    deploy.check_schedule("--retrain-cron", args.retrain_cron, args.timezone)
    deploy.check_schedule("--forecast-cron", args.forecast_cron, args.timezone)
    deploy.check_schedule("--score-cron", args.score_cron, args.timezone)
    cfg = pipeline_config(args)
    predict.check_output(args.output)  # else every scheduled forecast would fail at its end
    store = _forecast_store(args)
    if args.dask_address:
        runners.check_dask_address(args.dask_address)
    url = deploy.require_server()
    if args.dask_address:  # each run imports its flow in a subprocess that inherits this
        os.environ[runners.DASK_ADDRESS_ENV] = args.dask_address
    # a retraining and a forecast due at the same minute would race to create a new store
    Store.open(cfg.tracking.tracking_uri).experiment_id(cfg.tracking.experiment)
    ForecastHistory.open(store_url(store)).close()  # reachable, its schema made, before serving
    model_uri = _model_uri(args, cfg)
    deployments = deploy.build_deployments(
        cfg,
        model_uri,
        args.output,
        args.retrain_cron,
        args.forecast_cron,
        args.timezone,
        forecast_store=store,
        score_cron=args.score_cron,
    )
    model_name = model_name_of(model_uri)  # the name its forecasts, scores and events carry
    auto = not args.no_auto_retrain
    automation = deploy.install_retrain_automation(deployments[0], model_name, enabled=auto)
    retrains = "retrains on degradation" if auto else "no retraining on degradation"
    print(
        f"serving lstm-train/retrain '{args.retrain_cron}', lstm-forecast/forecast "
        f"'{args.forecast_cron}' and lstm-score/score '{args.score_cron}' ({args.timezone}) "
        f"on {url} ({model_name} {retrains}); Ctrl-C stops",
        flush=True,
    )
    deploy.serve_deployments(deployments)
    names = [d.name for d in deployments]
    return {"deployments": names, "api_url": url, "automation": automation}


def run_promote(args: argparse.Namespace) -> dict[str, Any]:
    from lstm_pipeline import registry

    store, model_name = _reachable_registry(args)
    result = registry.promote(store, model_name, args.version, args.reason)
    print(_alias_move(result))
    return result


def run_rollback(args: argparse.Namespace) -> dict[str, Any]:
    from lstm_pipeline import registry

    store, model_name = _reachable_registry(args)
    result = registry.rollback(store, model_name, args.reason)
    print(_alias_move(result))
    return result


def _reachable_registry(args: argparse.Namespace) -> tuple[Store, str]:
    """The store and the model name; a dead server fails in seconds, not after MLflow's minutes
    of retries, and a missing local store (sqlite, file) is not created (an alias needs one)."""
    from lstm_pipeline.errors import InputError
    from lstm_pipeline.tracking import Store

    tracking = pipeline_config(args).tracking
    store = Store.open(tracking.tracking_uri)
    if store.is_missing:
        raise InputError(
            f"no tracking store at {store.uri} (train first or pass --tracking-uri); "
            "no alias was moved"
        )
    store.ensure_reachable(tracking.model_name, nothing_done="no alias was moved")
    return store, tracking.model_name


def _alias_move(result: dict[str, Any]) -> str:
    name, version = result["model_name"], result["champion"]
    if not result["changed"]:
        return f"{name} v{version} already holds @champion: nothing changed"
    before = f"v{result['previous_champion']}" if result["previous_champion"] else "no champion"
    return f"{name}@champion: {before} -> v{version} ({result['reason']})"
