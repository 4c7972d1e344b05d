"""`lstm-pipeline`: fetch, train, forecast, serve schedules, promote or roll back models.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 any other failure.
When `fetch` or `forecast` loses some tickers but not all, the others are done and each failure
is listed on stderr; the exit code is then 2 if every failure is bad input, else 1.
`--json` prints one JSON object as the last line of stdout. The parser and the exit codes live
here; the handlers, which import their flow only when run, in flows/commands.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any, NoReturn, get_args

from pydantic import BaseModel

from flows import commands
from flows.memory import keep_freed_memory
from flows.runners import DASK_ADDRESS_ENV, DEFAULT_RUNNER, RunnerKind
from lstm_pipeline.config import (
    CACHE_ENV,
    DEFAULT_CACHE_DIR,
    DEFAULT_FORECAST_OUTPUT,
    DEFAULT_FORECAST_STORE,
    DEFAULT_MODEL_URI,
    DEFAULT_SOURCE,
    DEFAULT_TRACKING_URI,
    FORECAST_STORE_ENV,
    OPTUNA_STORAGE_ENV,
    SAMPLE_TICKERS,
    DataConfig,
    Device,
    Interval,
    Source,
    TrackingConfig,
    TrainConfig,
    Trigger,
)
from lstm_pipeline.errors import InputError, exit_code_for, one_line

PROG = "lstm-pipeline"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _default(model: type[BaseModel], field: str) -> Any:
    """The config's own default of `model.field`, for an option's default or its help text."""
    return model.model_fields[field].default


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (use YYYY-MM-DD)") from None


def _data_options(parser: argparse.ArgumentParser, tickers: bool = True) -> None:
    if tickers:
        parser.add_argument(
            "--tickers",
            nargs="+",
            metavar="T",
            help="default: every TICKER.csv in --data-dir for --source csv, else "
            + " ".join(SAMPLE_TICKERS),
        )
    parser.add_argument(
        "--source",
        choices=get_args(Source),
        help=f"where prices come from (default: {DEFAULT_SOURCE}; sample = bundled data)",
    )
    parser.add_argument("--data-dir", help="directory of TICKER.csv files (source csv)")
    parser.add_argument(
        "--cache-dir",
        help=f"price cache of the yfinance source (default: ${CACHE_ENV}, else "
        f"{DEFAULT_CACHE_DIR})",
    )
    parser.add_argument("--start", type=_iso_date, help="first date used, YYYY-MM-DD")
    parser.add_argument("--end", type=_iso_date, help="last date used (inclusive), YYYY-MM-DD")
    parser.add_argument(
        "--max-failure-ratio",
        type=float,
        metavar="R",
        help="fail when a larger share of the tickers fails (default "
        f"{_default(DataConfig, 'max_failure_ratio')}); up to it, warn",
    )


def _runner_options(parser: argparse.ArgumentParser, kinds: bool = True) -> None:
    if kinds:
        parser.add_argument(
            "--task-runner",
            choices=get_args(RunnerKind),
            help=f"where per-ticker fetches, folds and trials run (default: {DEFAULT_RUNNER}; "
            "dask without --dask-address starts a temporary local cluster)",
        )
    parser.add_argument(
        "--dask-address",
        metavar="ADDR",
        help="scheduler of an existing Dask cluster, e.g. tcp://scheduler:8786 (implies dask; "
        f"default: ${DASK_ADDRESS_ENV})",
    )


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of config overrides (see flows/configs/)")


def _training_options(parser: argparse.ArgumentParser) -> None:
    _config_option(parser)
    parser.add_argument(
        "--max-epochs", type=int, help=f"default: {_default(TrainConfig, 'max_epochs')}"
    )
    parser.add_argument(
        "--device",
        choices=get_args(Device),
        help=f"default: {_default(TrainConfig, 'device')}",
    )
    parser.add_argument("--seed", type=int, help=f"default: {_default(TrainConfig, 'seed')}")
    parser.add_argument(
        "--experiment",
        help=f"MLflow experiment (default: {_default(TrackingConfig, 'experiment')})",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING_URI})",
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
        "--interval",
        choices=get_args(Interval),
        help=f"bar size to cache (default: {_default(DataConfig, 'interval')})",
    )
    _config_option(fetch)
    fetch.add_argument("--json", action="store_true", help="print one JSON object as last line")
    _runner_options(fetch)
    fetch.set_defaults(handler=commands.run_fetch)

    train = sub.add_parser("train", help="run the training flow")
    _data_options(train)
    _training_options(train)
    train.add_argument(
        "--trigger",
        choices=get_args(Trigger),
        help="what started this run, logged as its `trigger` tag (default: "
        f"{_default(TrackingConfig, 'trigger')})",
    )
    _common(train)
    _runner_options(train)
    train.set_defaults(handler=commands.run_train)

    backtest = sub.add_parser("backtest", help="walk-forward backtest against the naive forecast")
    _data_options(backtest)
    _training_options(backtest)
    backtest.add_argument("--folds", type=int, default=4, help="refits (default %(default)s)")
    backtest.add_argument(
        "--fold-days",
        "--step",  # its first name, kept working
        type=int,
        default=126,
        help="trading days scored per fold (default %(default)s, half a year)",
    )
    _common(backtest)
    _runner_options(backtest)
    backtest.set_defaults(handler=commands.run_backtest)

    tune = sub.add_parser("tune", help="Optuna search; writes the best config as YAML")
    _data_options(tune)
    _training_options(tune)
    tune.add_argument("--trials", type=int, default=20)
    tune.add_argument("--parallel", type=int, default=1, help="trials run at once as tasks")
    tune.add_argument("--output", default="tuned.yaml", help="best config, for train --config")
    tune.add_argument(
        "--optuna-storage",
        metavar="URL",
        help="Optuna storage every worker reaches, e.g. postgresql://... (default: "
        f"${OPTUNA_STORAGE_ENV}, else a temporary sqlite file, removed at the end)",
    )
    _common(tune)
    _runner_options(tune)
    tune.set_defaults(handler=commands.run_tune)

    forecast = sub.add_parser("forecast", help="run the batch forecast flow")
    _data_options(forecast)
    _config_option(forecast)
    _forecast_options(forecast)
    _common(forecast)
    _runner_options(forecast)
    forecast.set_defaults(handler=commands.run_forecast)

    score = sub.add_parser(
        "score", help="score the forecast history against the closes that followed"
    )
    score.add_argument(
        "--tickers",
        nargs="+",
        metavar="T",
        help="score only these of the history's tickers (default: every ticker it holds)",
    )
    _data_options(score, tickers=False)
    _config_option(score)  # its monitor section: windows, min_matured, the thresholds
    _forecast_store_option(score)
    score.add_argument(
        "--model-name",
        help="whose forecasts to score, every version (default: the config's "
        f"tracking.model_name, {_default(TrackingConfig, 'model_name')}; a forecast from a "
        ".onnx file is recorded under the file's name without .onnx)",
    )
    _common(score)
    _runner_options(score)
    score.set_defaults(handler=commands.run_score)

    serve = sub.add_parser(
        "serve", help="serve scheduled retraining, forecasting and scoring on the Prefect server"
    )
    _schedule_options(serve)
    _data_options(serve)
    _training_options(serve)
    _forecast_options(serve)
    _common(serve)
    _runner_options(serve, kinds=False)
    serve.set_defaults(handler=commands.run_serve)

    promote = sub.add_parser("promote", help="give the champion alias to a model version")
    promote.add_argument("version", metavar="VERSION", help="registered version number")
    _registry_options(promote)
    promote.set_defaults(handler=commands.run_promote)

    rollback = sub.add_parser("rollback", help="give the champion alias back to the previous one")
    _registry_options(rollback)
    rollback.set_defaults(handler=commands.run_rollback)
    return parser


def _forecast_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-uri",
        help="models:/NAME@ALIAS, models:/NAME/VERSION or a .onnx file (default: the champion "
        f"of the config's tracking.model_name, {DEFAULT_MODEL_URI})",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_FORECAST_OUTPUT,
        help="forecast file, .csv or .parquet, written atomically (default: %(default)s)",
    )
    _forecast_store_option(parser)


def _forecast_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--forecast-store",
        metavar="URL",
        help="SQLAlchemy URL of the forecast history every run is added to, e.g. "
        f"postgresql://user@host/db (default: ${FORECAST_STORE_ENV}, else "
        f"{DEFAULT_FORECAST_STORE})",
    )


# Exchange time, so daylight saving moves the runs with the market's close.
DEFAULT_TIMEZONE = "America/New_York"
DEFAULT_RETRAIN_CRON = "0 6 * * 6"  # Saturday 06:00: the week's bars are final, nobody waits
DEFAULT_FORECAST_CRON = "30 17 * * 1-5"  # weekdays 17:30: after the 16:00 close settles
DEFAULT_SCORE_CRON = "0 18 * * 1-5"  # weekdays 18:00: after the day's forecast is recorded


def _schedule_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retrain-cron",
        default=DEFAULT_RETRAIN_CRON,
        metavar="CRON",
        help=f"when to retrain (default: '{DEFAULT_RETRAIN_CRON}', Saturdays 06:00)",
    )
    parser.add_argument(
        "--forecast-cron",
        default=DEFAULT_FORECAST_CRON,
        metavar="CRON",
        help=f"when to forecast (default: '{DEFAULT_FORECAST_CRON}', weekdays 17:30)",
    )
    parser.add_argument(
        "--score-cron",
        default=DEFAULT_SCORE_CRON,
        metavar="CRON",
        help=f"when to score matured forecasts (default: '{DEFAULT_SCORE_CRON}', weekdays 18:00)",
    )
    parser.add_argument(
        "--timezone",
        default=DEFAULT_TIMEZONE,
        metavar="TZ",
        help=f"IANA time zone of the crons (default: {DEFAULT_TIMEZONE})",
    )
    parser.add_argument(
        "--no-auto-retrain",
        action="store_true",
        help="degraded events still go out, but no automation retrains on them (removed if a "
        "previous serve installed it)",
    )


def _registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="no reason given", help="stored as a version tag")
    parser.add_argument(
        "--model-name",
        help=f"registered model (default: {_default(TrackingConfig, 'model_name')})",
    )
    _config_option(parser)  # its tracking section: the store and the model name
    _common(parser)


def configure_logging(verbose: bool = False) -> None:
    """Call before prefect is imported.

    Progress (the library's INFO lines) goes to stdout, as bars on a terminal, problems to
    stderr, so a failure on bad input is exactly one stderr line. Prefect's own console output
    (server start, state changes, tracebacks) stays in the flow-run logs of the Prefect UI
    unless `verbose`.
    """
    # no usage reports from jobs that run unattended, often on machines without internet
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    library = logging.getLogger("lstm_pipeline")
    library.setLevel(logging.INFO)
    if verbose:
        return  # library records reach Prefect's console handler through the root logger
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no db-migration chatter
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download
    from flows.progress import TerminalProgress, on_a_terminal, plain_lines  # rich: not at --help

    formatter = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    # on a terminal, live bars for epochs, tickers and folds; in a log, one plain line each
    progress: logging.Handler = TerminalProgress() if on_a_terminal() else plain_lines()
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    flows = logging.getLogger("flows")  # the flows' counts of tickers and folds
    flows.setLevel(logging.INFO)
    for handler in (progress, problems):
        handler.setFormatter(formatter)
        library.addHandler(handler)
        flows.addHandler(handler)


@contextmanager
def interrupt_is_final(where: str, grace_s: float = 10.0) -> Iterator[threading.Event]:
    """Ctrl-C (SIGINT) ends the command, always. Yields the event to set once it has returned.

    It raises KeyboardInterrupt as usual, so the command stops cleanly and says so. But Python
    swallows an exception raised inside a finalizer or a garbage-collector callback (SQLAlchemy
    and asyncio have them): it prints "Exception ignored in ..." and a traceback, and the work
    went on to its end. So those lines are not printed, and a command that has not returned
    `grace_s` after the signal ends there, with the same one line and exit code 130.
    """
    returned = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach it alone
        yield returned
        return

    def end_later() -> None:
        if not returned.wait(grace_s):
            print(f"{where}: interrupted", file=sys.stderr, flush=True)
            os._exit(130)

    def on_sigint(signum: int, frame: Any) -> None:
        threading.Thread(target=end_later, name="end-after-interrupt", daemon=True).start()
        raise KeyboardInterrupt

    def unraisable(info: Any) -> None:
        if not issubclass(info.exc_type, KeyboardInterrupt):
            sys.__unraisablehook__(info)

    previous = signal.signal(signal.SIGINT, on_sigint), sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        yield returned
    finally:
        signal.signal(signal.SIGINT, previous[0])
        sys.unraisablehook = previous[1]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], dict[str, Any]] = args.handler
    where = f"{PROG} {args.command}"
    with interrupt_is_final(where) as returned:
        code = _run(handler, args, where)
        returned.set()
    return code


def _run(
    handler: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace, where: str
) -> int:
    """The handler's result as an exit code, and every failure as one line on stderr."""
    try:
        result = handler(args)
        code = report_failures(where, result.get("failed", {}))
    except InputError as exc:
        print(f"{where}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI's last line of defence: one line, not a traceback
        message = one_line(exc) if str(exc).strip() else ""
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


def entry_point() -> NoReturn:
    """The `lstm-pipeline` command: main, with the garbage collector kept off the objects that
    importing torch, Prefect, MLflow and pandas makes (about a million, none ever garbage).
    Collection is off while the command imports its flow (each full collection walked them all
    again: ~2 s of a training's CPU) and back on, minus those objects, once the flow is
    imported (commands.collect_from_now); at exit they are not walked a last time either (0.5 s
    of a 3 s forecast). Exit handlers and thread shutdown still run. Freed memory stays in
    the process for the next large array (flows/memory.py)."""
    gc.disable()
    keep_freed_memory()
    code = main()
    gc.freeze()  # the final collection skips frozen objects; the process ends regardless
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
