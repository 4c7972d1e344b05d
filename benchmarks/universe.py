"""Universe scale: the real CLI's training and forecast flows on 50, 500 and 5,000 tickers.

Synthetic daily bars (tests/synthetic.py: 2,520 rows, 10 years from 2015-01-01, tickers
T0000..) as TICKER.csv files, one folder per size (`--data-root DIR` keeps them in DIR/U{N}
and reuses complete ones; writing is never timed). Every command is `lstm-pipeline ... --json`
in a subprocess, in a scratch working directory with its own MLflow store, in two Prefect modes:

- server: one `prefect server start` on loopback, PREFECT_API_URL set, as a team runs it (the
  goals are judged here; the server is its own process group and not counted in memory);
- no server: PREFECT_API_URL unset, so each command starts its temporary server.

Per size: training with flows/configs/smoke.yaml (a tiny model, so the work around the epochs
shows; sizes over 1,000 train on the last 3 of the 10 years), then forecasts with the run's
model from the registry and with an untrained default-shape model (window 60, horizon 5,
quantiles; an .onnx file), `--repeats` times each (once over 1,000 tickers); also 6 tickers of
the bundled sample, and `--help` of every command. `--default-model` adds the default model on
500 tickers for 1 epoch (its non-epoch share, projected to the default 30 epochs).

Per command: wall time, CPU time, peak RSS (`wait4`'s ru_maxrss: the largest process of the
command's tree; not below this script's own, recorded as `parent_peak_rss_mib`), the flow's
stage `timings` where the CLI reports them (start-up = wall - their sum, non-epoch = wall -
epochs), the artifact store's files and the forecast file. Per-ticker cost is a least-squares
line over the sizes. JSON to benchmarks/results/universe-cpu.json, markdown tables, the goals.
Usage: python benchmarks/universe.py [--sizes 50 500 5000] [--data-root DIR] [--repeats 3]
       [--default-model] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, load, median, write
from e2e import prefect_server
from scale import peak_rss_mib
from universe_report import (
    LARGE,  # above: training on LARGE_START onwards, forecasts once
    MODELS,
    artifact_summary,
    fits,
    goals,
    print_tables,
    subcommands,
    timing_split,
)

SIZES, QUICK_SIZES = (50, 500, 5000), (10, 50)
ROWS, FIRST_DAY = 2520, "2015-01-01"
LARGE_START = "2021-09-01"  # the last 3 of the 10 years
CLI = str(Path(sys.executable).parent / "lstm-pipeline")
CREATE_STORE = (  # what `serve` does before its first run: the store and the experiment
    "import sys; from lstm_pipeline.config import MODEL_NAME; "
    "from lstm_pipeline.tracking import Store; Store.open(sys.argv[1]).experiment_id(MODEL_NAME)"
)
SMOKE = str(ROOT / "flows" / "configs" / "smoke.yaml")


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    """One `lstm-pipeline` command: its figures, and its stdout. Failing is fatal."""
    log = cwd / "logs"
    log.mkdir(parents=True, exist_ok=True)
    out, err = log / "stdout.txt", log / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen([CLI, *args], cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of the child and its reaped children
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = err.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"lstm-pipeline {' '.join(args)}: exit {proc.returncode}: {tail}")
    text = out.read_text()
    result = json.loads(text.strip().splitlines()[-1]) if "--json" in args else {}
    record = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
    }
    timings = {k: v for k, v in result.get("timings", {}).items() if isinstance(v, int | float)}
    return record | timing_split(wall, timings) | {"result": result}, text


def repeated(args: list[str], cwd: Path, env: dict[str, str], repeats: int) -> dict[str, Any]:
    """Medians of `repeats` runs of one command; each run's figures under `runs`."""
    runs = [cli(args, cwd, env)[0] for _ in range(repeats)]
    out: dict[str, Any] = {
        k: median(r[k] for r in runs) for k in ("wall_s", "cpu_s", "peak_rss_mib")
    }
    stages = runs[0]["timings"]
    out |= timing_split(out["wall_s"], {k: median(r["timings"][k] for r in runs) for k in stages})
    return out | {"result": runs[-1]["result"], "walls": [r["wall_s"] for r in runs]}


def universe(root: Path, size: int) -> Path:
    """DIR/U{size} with `size` synthetic tickers; missing files are written (in a child)."""
    folder = root / f"U{size}"
    if len(list(folder.glob("T*.csv"))) < size:
        folder.mkdir(parents=True, exist_ok=True)
        write = [sys.executable, __file__, "--child", "write", str(folder), str(size)]
        subprocess.run(write, check=True)
    return folder


def write_universe(folder: Path, size: int) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.synthetic import make_prices

    for i in range(size):
        path = folder / f"T{i:04d}.csv"
        if not path.exists():  # a folder of earlier runs is reused, not rewritten
            make_prices(ROWS, seed=i, start=FIRST_DAY).to_csv(path, index=False)


def train(work: Path, data: Path, env: dict[str, str], extra: list[str]) -> dict[str, Any]:
    """One training run in `work`, on a store of its own made just before (a scheduled
    retraining finds its store there: creating one, ~1.5 s of MLflow's table migrations, is
    once per store and reported apart); the artifact store's files after it."""
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'mlflow' / 'mlflow.db'}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", CREATE_STORE, uri], cwd=work, env=env, check=True)
    created = time.perf_counter() - started
    args = ["train", "--source", "csv", "--data-dir", str(data), "--tracking-uri", uri, "--json"]
    record, _ = cli(args + extra, work, env)
    record["store_creation_s"] = created
    record["artifacts"] = artifact_summary(work / "mlflow" / "artifacts")
    record["options"] = [option.replace(f"{ROOT}/", "") for option in extra]
    result = record["result"]
    record["model_uri"] = (
        f"models:/{result['model_name']}@champion"
        if result["promoted"]
        else f"models:/{result['model_name']}/{result['model_version']}"
    )
    record["result"] = {k: result.get(k) for k in ("run_id", "model_version", "promoted")}
    return record


def forecasts(
    work: Path, source: list[str], models: dict[str, str], env: dict[str, str], repeats: int
) -> dict[str, Any]:
    """Each model's forecast of `source`, medians of `repeats`, with the file's size."""
    uri = f"sqlite:///{work / 'mlflow' / 'mlflow.db'}"
    out: dict[str, Any] = {}
    for name, model in models.items():
        output = work / "forecasts" / f"{source[1]}-{name.split()[0]}.csv"
        args = ["forecast", *source, "--model-uri", model, "--tracking-uri", uri]
        record = repeated([*args, "--output", str(output), "--json"], work, env, repeats)
        record["forecast_file_bytes"] = output.stat().st_size
        out[name] = record
    return out


def run_mode(
    work: Path, folders: dict[int, Path], env: dict[str, str], options: argparse.Namespace
) -> dict[str, Any]:
    """One Prefect mode: per size, training (unless `options.trained` has the models) and
    forecasts; then the sample. A first forecast, not counted, warms the mode up."""
    onnx, training = str(options.onnx), not options.trained
    cli(["forecast", "--source", "sample", "--model-uri", onnx, "--json"], work / "warm-up", env)
    out: dict[str, Any] = {"train": {}, "forecast": {}}
    for n, folder in folders.items():
        size_work = work / f"U{n}"
        if training:
            cut = ["--start", LARGE_START] if n > LARGE else []
            extra = ["--config", SMOKE, *cut, *(["--max-epochs", "1"] if options.quick else [])]
            out["train"][str(n)] = train(size_work, folder, env, extra)
            options.trained[n] = out["train"][str(n)]["model_uri"], size_work
        uri, store = options.trained[n]
        models = {MODELS[0]: uri, MODELS[1]: onnx}
        repeats = options.repeats if n <= LARGE else 1
        source = ["--source", "csv", "--data-dir", str(folder)]
        out["forecast"][str(n)] = forecasts(store, source, models, env, repeats)
        print(f"{work.name}, {n} tickers done; load {load()}", flush=True)
    uri, store = options.trained[min(folders)]
    models = {MODELS[0]: uri, MODELS[1]: onnx}
    out["sample"] = forecasts(store, ["--source", "sample"], models, env, options.repeats)
    if training and options.default_model and 500 in folders:
        out["default_model"] = train(work / "default", folders[500], env, ["--max-epochs", "1"])
    return out


def help_timings(work: Path, env: dict[str, str], repeats: int) -> dict[str, float]:
    """Median seconds of `lstm-pipeline --help` and of each command's `--help`."""
    _, text = cli(["--help"], work, env)
    commands = [[]] + [[c] for c in subcommands(text)]
    return {
        " ".join(["lstm-pipeline", *c, "--help"]): median(
            cli([*c, "--help"], work, env)[0]["wall_s"] for _ in range(repeats)
        )
        for c in commands
    }


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without a Prefect API, Prefect home or MLflow URI; the worktree's code."""
    unset = ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    return env | {"PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | extra


NOTES = [
    "train: flows/configs/smoke.yaml; sizes over 1,000 tickers with --start "
    f"{LARGE_START} (the last 3 of the 10 years); in the server mode only (the other mode adds "
    "the temporary server's start, seen on the forecasts)",
    "forecast: 'registry (smoke)' is the training run's model from the registry, 'default "
    "shape (onnx)' an untrained window-60, horizon-5 quantile model as a file; median of "
    "--repeats up to 1,000 tickers, one run above",
    "peak RSS: wait4's ru_maxrss, the largest process of the command's tree (not a sum); the "
    "server mode's Prefect server is not counted",
    "start-up = wall - sum(timings), non-epoch = wall - timings.epochs: both need the CLI's "
    "--json timings",
    "each training runs on a store made just before it (store_creation_s, not in its wall): a "
    "scheduled retraining finds its store there",
]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="default: 50 500 5000 (10 50 quick)")
    parser.add_argument("--data-root", type=Path, help="keep (and reuse) the U{N} folders here")
    parser.add_argument("--repeats", type=int, default=3, help="forecasts up to 1,000 tickers")
    parser.add_argument("--help-repeats", type=int, default=5)
    parser.add_argument("--default-model", action="store_true", help="(~10+ min) see above")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 1 epoch: a smoke run")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.help_repeats = 1, 1
    args.sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else SIZES))
    args.output = (args.output or RESULTS / "universe-cpu.json").resolve()
    return args


def child(kind: str, *rest: str) -> None:
    """What this script runs in a child, to keep its own memory (a floor of ru_maxrss) low."""
    if kind == "write":
        write_universe(Path(rest[0]), int(rest[1]))
    else:
        from scale import export_model  # torch

        export_model(Path(rest[0]))


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """--help, then both Prefect modes, in `work`."""
    root = (args.data_root or work / "data").resolve()
    folders = {n: universe(root, n) for n in args.sizes}
    args.onnx, args.trained = work / "default-shape.onnx", {}
    subprocess.run([sys.executable, __file__, "--child", "export", str(args.onnx)], check=True)
    help_s = help_timings(work / "help", cli_env(), args.help_repeats)
    with prefect_server(work / "prefect") as api:
        env = cli_env(PREFECT_API_URL=api, PREFECT_HOME=str(work / "home-server"))
        server = run_mode(work / "server", folders, env, args)
    env = cli_env(PREFECT_HOME=str(work / "home-temporary"))
    return {
        "help": help_s,
        "modes": {"server": server, "no server": run_mode(work / "no-server", folders, env, args)},
    }


def main() -> None:
    args = parse()
    if args.child:
        child(*args.child)
        return
    load_before, started = load(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-universe-") as folder:
        measured = measure(args, Path(folder))
    report = {
        "sizes": args.sizes,
        "rows_per_ticker": ROWS,
        "repeats": args.repeats,
        "quick": args.quick,
        "notes": NOTES,
        "loadavg_before": load_before,
        "parent_peak_rss_mib": peak_rss_mib(),
        **measured,
        "per_ticker": {name: fits(mode) for name, mode in measured["modes"].items()},
    }
    report["goals"] = goals(report)
    report["seconds"] = time.perf_counter() - started
    output = write("universe-cpu", report, args.output)
    print_tables(report)
    print(f"\n{report['seconds']:.0f} s; load before {load_before}, after {load()}; wrote {output}")


if __name__ == "__main__":
    main()
