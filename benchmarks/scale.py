"""Scale: forecast time and memory for 10-1,000 tickers, training throughput for 6-384 tickers.

Synthetic daily bars (tests/synthetic.py, `--rows` per ticker) are written as TICKER.csv files
to a temp folder and read through the `csv` source, as a user's own files would be. Every size
runs in a fresh subprocess, so its peak RSS (VmHWM) is its own:

- forecast: the forecast flow's library path without Prefect or a registry: load and validate
  each ticker's CSV, latest windows, `OnnxForecaster` (the default model shape: window 60,
  LSTM 64x2, horizon 5, nine calibrated quantiles; exported once), `forecast_table`, write
  the CSV. It imports no torch.
- training: load, windows, `fit` for `--epochs` epochs of a small model (LSTM 16x1; no early
  stop, no MLflow; `--threads` torch threads, default 1) on all tickers, after a one-epoch
  warm-up on one ticker; windows/s is fit's own figure (epochs only, no validation).

Each figure is the median of `--repeats` runs; a least-squares line over the sizes gives the
per-ticker cost (slope) and fixed cost (intercept), with R^2 for how linear the growth is.
JSON to benchmarks/results/scale-cpu.json and tables.
Usage: python benchmarks/scale.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, load, median, table, write

FORECAST_SIZES = (10, 100, 1000)
TRAIN_SIZES = (6, 24, 96, 384)
WINDOW, HORIZON = 60, 5


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status, MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib() -> float:
    """Resident memory now."""
    return status_mib("VmRSS")


def peak_rss_mib() -> float:
    """This process's RSS high-water mark. Not `ru_maxrss`: Linux carries that across
    fork + exec, so a child would report at least its parent's (torch-loaded) peak."""
    return status_mib("VmHWM")


def write_csvs(folder: Path, count: int, rows: int) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tests.synthetic import make_prices

    tickers = [f"T{i:04d}" for i in range(count)]
    for i, ticker in enumerate(tickers):
        make_prices(rows, seed=i).to_csv(folder / f"{ticker}.csv", index=False)
    return tickers


def export_model(path: Path) -> None:
    """The default-shape model, untrained (speed does not depend on the weights)."""
    import torch

    from lstm_pipeline.config import DEFAULT_QUANTILES
    from lstm_pipeline.data import FEATURES
    from lstm_pipeline.export import export_onnx
    from lstm_pipeline.model import LSTMForecaster

    torch.manual_seed(0)
    net = LSTMForecaster(len(FEATURES), HORIZON, quantiles=DEFAULT_QUANTILES)
    sample = torch.rand(8, WINDOW, len(FEATURES)) + 1.0
    export_onnx(net, sample, path, {"run_id": "scale-benchmark"})


def child_forecast(args: argparse.Namespace) -> dict[str, Any]:
    from lstm_pipeline import data, predict
    from lstm_pipeline.config import DataConfig

    baseline = rss_mib()
    cfg = DataConfig(source="csv", data_dir=str(args.data_dir), tickers=args.tickers)
    started = time.perf_counter()
    forecaster = predict.OnnxForecaster(args.model)
    prices = {t: data.load_prices(t, cfg, forecaster.window) for t in cfg.tickers}
    loaded = time.perf_counter()
    frame = predict.forecast_table(forecaster, prices, "1", "scale-benchmark")
    forecast = time.perf_counter()
    predict.write_forecasts(frame, args.data_dir / f"forecasts-{len(cfg.tickers)}.csv")
    done = time.perf_counter()
    return {
        "load_s": loaded - started,
        "forecast_s": forecast - loaded,
        "write_s": done - forecast,
        "total_s": done - started,
        "rows": len(frame),
        "rss_after_imports_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
        "imported_torch": "torch" in sys.modules,
    }


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lstm_pipeline import data, pipeline
    from lstm_pipeline.config import build_config
    from lstm_pipeline.features import build_window_sets

    baseline = rss_mib()
    cfg = build_config(
        data__source="csv",
        data__data_dir=str(args.data_dir),
        data__tickers=args.tickers,
        model__hidden_size=16,
        model__num_layers=1,
        train__max_epochs=args.epochs,
        train__patience=args.epochs + 1,  # every epoch runs
        train__threads=args.threads,
    )
    started = time.perf_counter()
    prices = {t: data.load_prices(t, cfg.data) for t in cfg.data.tickers}
    windows = build_window_sets(prices, cfg.features)
    loaded = time.perf_counter()
    # one-time costs (thread pools, allocator) out of the figures: one epoch on one ticker
    first = dict(list(prices.items())[:1])
    warm = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_epochs": 1})})
    pipeline.train_model(build_window_sets(first, cfg.features), warm)
    fit_started = time.perf_counter()
    result = pipeline.train_model(windows, cfg)
    done = time.perf_counter()
    return {
        "load_s": loaded - started,
        "fit_s": done - fit_started,
        "train_windows": len(windows["train"]),
        "epochs": result.stopped_epoch,
        "windows_per_s": result.train_windows_per_s,
        "threads": torch.get_num_threads(),
        "rss_after_imports_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_child(kind: str, tickers: list[str], common_args: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, __file__, "--child", kind, "--json-out", out.name, *common_args]
            + ["--tickers", *tickers],
            check=True,
        )
        return dict(json.loads(Path(out.name).read_text()))


def linear_fit(sizes: list[int], values: list[float]) -> dict[str, float]:
    """Least squares `value = slope * tickers + intercept`, with R^2."""
    x, y = np.asarray(sizes, float), np.asarray(values, float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    return {
        "per_ticker": float(slope),
        "fixed": float(intercept),
        "r2": float(1 - (residual**2).sum() / total) if total > 0 else 1.0,
    }


def sweep(
    kind: str, sizes: tuple[int, ...], tickers: list[str], repeats: int, common_args: list[str]
) -> dict[str, Any]:
    by_size: dict[str, Any] = {}
    for n in sizes:
        runs = [run_child(kind, tickers[:n], common_args) for _ in range(repeats)]
        keys = [k for k, v in runs[0].items() if type(v) in (int, float)]  # not bools
        by_size[str(n)] = {k: median(r[k] for r in runs) for k in keys} | {"runs": runs}
        print(f"{kind} {n} tickers: {by_size[str(n)]['peak_rss_mib']:.0f} MiB, load {load()}")
    return by_size


def summary(by_size: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    sizes = [int(n) for n in by_size]
    return {k: linear_fit(sizes, [by_size[str(n)][k] for n in sizes]) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=400, help="daily bars per ticker")
    parser.add_argument("--epochs", type=int, default=2)
    # 1: a per-core figure; torch's 2-thread OpenMP loop collapses (100x) when another process
    # holds a core, which would drown the growth this measures on a shared machine
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke run")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--child", choices=["forecast", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tickers", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure = child_forecast if args.child == "forecast" else child_train
        args.json_out.write_text(json.dumps(measure(args)))
        return
    forecast_sizes, train_sizes = FORECAST_SIZES, TRAIN_SIZES
    if args.quick:
        forecast_sizes, train_sizes, args.repeats, args.epochs = (2, 4), (2, 4), 1, 1
    load_before = load()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        work = Path(folder)
        tickers = write_csvs(work, max(*forecast_sizes, *train_sizes), args.rows)
        export_model(work / "model.onnx")
        common_args = ["--data-dir", str(work), "--model", str(work / "model.onnx")]
        forecast = sweep("forecast", forecast_sizes, tickers, args.repeats, common_args)
        train_args = [*common_args, "--epochs", str(args.epochs), "--threads", str(args.threads)]
        train = sweep("train", train_sizes, tickers, args.repeats, train_args)
    report = {
        "rows_per_ticker": args.rows,
        "repeats": args.repeats,
        "train_epochs": args.epochs,
        "train_threads": args.threads,
        "train_model": "LSTM 16x1, window 60, horizon 5, batch 256",
        "forecast_model": "LSTM 64x2, window 60, horizon 5, 9 quantiles (ONNX)",
        "loadavg_before": load_before,
        "seconds": time.perf_counter() - started,
        "forecast": forecast,
        "forecast_fit": summary(forecast, ("total_s", "peak_rss_mib")),
        "train": train,
        "train_fit": summary(train, ("fit_s", "load_s", "peak_rss_mib")),
    }
    output = write("scale-cpu", report, args.output)
    print(
        table(
            [
                "tickers",
                "load+validate s",
                "forecast s",
                "write s",
                "total s",
                "ms/ticker",
                "peak RSS MiB",
            ],
            [
                [
                    n,
                    f"{r['load_s']:.2f}",
                    f"{r['forecast_s']:.3f}",
                    f"{r['write_s']:.3f}",
                    f"{r['total_s']:.2f}",
                    f"{1000 * r['total_s'] / int(n):.1f}",
                    f"{r['peak_rss_mib']:.0f}",
                ]
                for n, r in forecast.items()
            ],
        )  # fmt: skip
    )
    print(
        table(
            ["tickers", "train windows", "windows/s", "fit s", "fit ms/ticker", "peak RSS MiB"],
            [
                [
                    n,
                    f"{r['train_windows']:,.0f}",
                    f"{r['windows_per_s']:,.0f}",
                    f"{r['fit_s']:.2f}",
                    f"{1000 * r['fit_s'] / int(n):.0f}",
                    f"{r['peak_rss_mib']:.0f}",
                ]
                for n, r in train.items()
            ],
        )  # fmt: skip
    )
    for name, fits in (("forecast", report["forecast_fit"]), ("train", report["train_fit"])):
        for key, f in fits.items():
            print(
                f"{name} {key}: {f['per_ticker']:.4g}/ticker + {f['fixed']:.4g} (R^2 {f['r2']:.3f})"
            )
    print(f"{report['seconds']:.0f} s; load before {load_before}, after {load()}; wrote {output}")


if __name__ == "__main__":
    main()
