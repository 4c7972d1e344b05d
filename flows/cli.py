"""`lstm-pipeline`: fetch, train, forecast, and promote or roll back models from the shell.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 any other failure.
When `fetch` or `forecast` loses some tickers but not all, the others are done and each failure
is listed on stderr; the exit code is then 2 if every failure is bad input, else 1.
`--json` prints one JSON object as the last line of stdout. Flows are imported per command,
so `forecast` never imports torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, NoReturn

from lstm_pipeline.errors import InputError, exit_code_for

PROG = "lstm-pipeline"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (use YYYY-MM-DD)") from None


def _data_options(parser: argparse.ArgumentParser, tickers: bool = True) -> None:
    if tickers:
        parser.add_argument(
            "--tickers", nargs="+", metavar="T", help="default: the six sample tickers"
        )
    parser.add_argument(
        "--source",
        choices=["yfinance", "sample", "csv"],
        default="yfinance",
        help="where prices come from (default: yfinance; sample = bundled data)",
    )
    parser.add_argument("--data-dir", help="directory of TICKER.csv files (source csv)")
    parser.add_argument(
        "--cache-dir",
        help="price cache of the yfinance source (default: $LSTM_PIPELINE_CACHE, else data/cache)",
    )
    parser.add_argument("--start", type=_iso_date, help="first date used, YYYY-MM-DD")
    parser.add_argument("--end", type=_iso_date, help="last date used (inclusive), YYYY-MM-DD")


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of config overrides (see flows/configs/)")


def _training_options(parser: argparse.ArgumentParser) -> None:
    _config_option(parser)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--experiment", help="MLflow experiment (default: lstm-forecaster)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow/mlflow.db)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as last line")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Prefect's own console logs (tracebacks included)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    fetch = sub.add_parser("fetch", help="fill the local price cache")
    fetch.add_argument("tickers", nargs="+", metavar="TICKER")
    _data_options(fetch, tickers=False)
    fetch.add_argument(
        "--interval", choices=["1d", "1h", "1wk"], help="bar size to cache (default: 1d)"
    )
    _config_option(fetch)
    fetch.add_argument("--json", action="store_true", help="print one JSON object as last line")
    fetch.set_defaults(handler=run_fetch)

    train = sub.add_parser("train", help="run the training flow")
    _data_options(train)
    _training_options(train)
    train.add_argument(
        "--trigger",
        choices=["manual", "schedule", "backtest", "tune"],
        help="what started this run, logged as its `trigger` tag (default: manual)",
    )
    _common(train)
    train.set_defaults(handler=run_train)

    backtest = sub.add_parser("backtest", help="walk-forward backtest against the naive forecast")
    _data_options(backtest)
    _training_options(backtest)
    backtest.add_argument("--folds", type=int, default=4, help="refits (default 4)")
    backtest.add_argument(
        "--step",
        type=int,
        default=126,
        help="trading days scored per fold (default 126, half a year)",
    )
    _common(backtest)
    backtest.set_defaults(handler=run_backtest)

    tune = sub.add_parser("tune", help="Optuna search; writes the best config as YAML")
    _data_options(tune)
    _training_options(tune)
    tune.add_argument("--trials", type=int, default=20)
    tune.add_argument("--parallel", type=int, default=1, help="trials run at once as tasks")
    tune.add_argument("--output", default="tuned.yaml", help="best config, for train --config")
    _common(tune)
    tune.set_defaults(handler=run_tune)

    forecast = sub.add_parser("forecast", help="run the batch forecast flow")
    _data_options(forecast)
    _config_option(forecast)
    forecast.add_argument(
        "--model-uri",
        default="models:/lstm-forecaster@champion",
        help="models:/NAME@ALIAS, models:/NAME/VERSION or a .onnx file",
    )
    forecast.add_argument(
        "--output",
        default="forecasts/forecasts.csv",
        help="forecast file, .csv or .parquet (written atomically)",
    )
    _common(forecast)
    forecast.set_defaults(handler=run_forecast)

    promote = sub.add_parser("promote", help="give the champion alias to a model version")
    promote.add_argument("version", metavar="VERSION", help="registered version number")
    _registry_options(promote)
    promote.set_defaults(handler=run_promote)

    rollback = sub.add_parser("rollback", help="give the champion alias back to the previous one")
    _registry_options(rollback)
    rollback.set_defaults(handler=run_rollback)
    return parser


def _registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="no reason given", help="stored as a version tag")
    parser.add_argument(
        "--model-name",
        default="lstm-forecaster",
        help="registered model (default: lstm-forecaster)",
    )
    _common(parser)


def _data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data__tickers": tuple(args.tickers) if args.tickers else None,
        "data__source": args.source,
        "data__data_dir": args.data_dir,
        "data__cache_dir": args.cache_dir,
        "data__start": args.start,
        "data__end": args.end,
    }


def run_fetch(args: argparse.Namespace) -> dict[str, Any]:
    from flows.fetching import fetch_flow
    from lstm_pipeline.config import build_config

    cfg = build_config(args.config, **_data_overrides(args), data__interval=args.interval)
    result = fetch_flow(cfg.data)
    for ticker, info in result["tickers"].items():
        print(f"{ticker}: {info['rows']} rows {info['first']}..{info['last']} -> {info['path']}")
    return result


def _training_config(args: argparse.Namespace) -> Any:
    from lstm_pipeline.config import build_config

    return build_config(
        args.config,
        **_data_overrides(args),
        train__max_epochs=args.max_epochs,
        train__device=args.device,
        train__seed=args.seed,
        tracking__tracking_uri=args.tracking_uri,
        tracking__experiment=args.experiment,
        tracking__trigger=getattr(args, "trigger", None),  # backtest and tune tag their own
    )


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    cfg = _training_config(args)
    from flows.training import train_flow

    result = train_flow(cfg)
    print(format_training(result))
    return result


def run_backtest(args: argparse.Namespace) -> dict[str, Any]:
    from lstm_pipeline.errors import InputError

    if args.folds < 1 or args.step < 1:
        raise InputError(f"--folds {args.folds} and --step {args.step} must be at least 1")
    cfg = _training_config(args)
    from flows.backtest import backtest_flow

    result = backtest_flow(cfg, args.folds, args.step)
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
    from lstm_pipeline.errors import InputError

    if args.trials < 1 or args.parallel < 1:
        raise InputError(f"--trials {args.trials} and --parallel {args.parallel} must be >= 1")
    cfg = _training_config(args)
    from flows.tuning import tune_flow

    result = tune_flow(cfg, args.trials, args.parallel, args.output)
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
    return "\n".join(
        [
            f"run {result['run_id']}: {result['model_name']} v{result['model_version']} "
            f"-> @{result['alias']} ({result['reason']})",
            f"  test MAE {m['test_mae']:.4f} vs naive {m['naive_test_mae']:.4f}: MASE "
            f"{m['test_mase']:.4f} (val MASE {m['val_mase']:.4f}; horizons 1..{h})",
            f"  direction right {m['test_directional_accuracy']:.1%} vs base rate "
            f"{m['test_direction_base_rate']:.1%}",
            f"  best epoch {m['best_epoch']} of {m['stopped_epoch']}, "
            f"{m['train_windows_per_s']:.0f} training windows/s",
        ]
    )


def run_forecast(args: argparse.Namespace) -> dict[str, Any]:
    from flows.inference import forecast_flow
    from lstm_pipeline.config import build_config

    cfg = build_config(args.config, **_data_overrides(args))
    result = forecast_flow(cfg.data, args.model_uri, args.output, args.tracking_uri)
    print(
        f"wrote {result['rows']} forecasts to {result['output']} "
        f"(model version {result['model_version']}, {args.model_uri})"
    )
    return result


def run_promote(args: argparse.Namespace) -> dict[str, Any]:
    from lstm_pipeline import registry

    result = registry.promote(args.tracking_uri, args.model_name, args.version, args.reason)
    print(_alias_move(result))
    return result


def run_rollback(args: argparse.Namespace) -> dict[str, Any]:
    from lstm_pipeline import registry

    result = registry.rollback(args.tracking_uri, args.model_name, args.reason)
    print(_alias_move(result))
    return result


def _alias_move(result: dict[str, Any]) -> str:
    name, version = result["model_name"], result["champion"]
    if not result["changed"]:
        return f"{name} v{version} already holds @champion: nothing changed"
    before = f"v{result['previous_champion']}" if result["previous_champion"] else "no champion"
    return f"{name}@champion: {before} -> v{version} ({result['reason']})"


def configure_logging(verbose: bool = False) -> None:
    """Call before prefect is imported.

    Progress (the library's INFO lines) goes to stdout, problems to stderr, so a failure on bad
    input is exactly one stderr line. Prefect's own console output (server start, state
    changes, tracebacks) stays in the flow-run logs of the Prefect UI unless `verbose`.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "lstm_pipeline")  # into flow-run logs
    library = logging.getLogger("lstm_pipeline")
    library.setLevel(logging.INFO)
    if verbose:
        return  # library records reach Prefect's console handler through the root logger
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no db-migration chatter
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download
    formatter = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    progress = logging.StreamHandler(sys.stdout)
    progress.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    for handler in (progress, problems):
        handler.setFormatter(formatter)
        library.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], dict[str, Any]] = args.handler
    where = f"{PROG} {args.command}"
    try:
        result = handler(args)
        code = report_failures(where, result.get("failed", {}))
    except InputError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI's last line of defence: one line, not a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"{where}: failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, default=str))
    return code


def report_failures(where: str, failed: dict[str, dict[str, Any]]) -> int:
    """One stderr line per failed ticker and a count; the exit code they call for."""
    for info in failed.values():
        print(f"{where}: error: {info['error']}", file=sys.stderr)
    if failed:
        print(f"{where}: {len(failed)} ticker(s) failed: {', '.join(failed)}", file=sys.stderr)
    return exit_code_for(failed)


if __name__ == "__main__":
    sys.exit(main())
