"""Batch inference speed: our onnxruntime forecast path vs the same model in torch eager.

Same exported model (default shapes: window 60, 5 features, LSTM 64x2, horizon 5), raw
windows in, prices out, at batch 1, batch 1,000, and one batched call for 500 tickers'
latest windows (what a nightly forecast job does). Three columns: ours (`OnnxForecaster`:
single-threaded session, a large batch split into one chunk per core run at once), one plain
onnxruntime call with `threads` intra-op threads (the previous forecast path), and torch eager
under `inference_mode` with the same thread count. Each figure is the median of `--repeats`
measurements of `--seconds` each, the three columns interleaved so load drift hits them alike.
JSON to benchmarks/results/inference-cpu.json and a Markdown table.

Usage: python benchmarks/inference.py [--seconds 2] [--repeats 5] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from common import load, median, table, write

from lstm_pipeline.config import DataConfig
from lstm_pipeline.data import FEATURES, load_prices
from lstm_pipeline.export import export_onnx
from lstm_pipeline.model import LSTMForecaster, PriceForecaster
from lstm_pipeline.predict import OnnxForecaster

WINDOW, HORIZON = 60, 5
CASES = (("batch 1", 1), ("batch 1,000", 1000), ("500 tickers", 500))


def real_windows(count: int) -> np.ndarray:
    """`count` windows [count, 60, 5] cut from the bundled SPY series (raw, adjusted)."""
    prices = load_prices("SPY", DataConfig(source="sample")).to_numpy(np.float32)
    starts = np.linspace(0, len(prices) - WINDOW, count).astype(int)
    return np.stack([prices[s : s + WINDOW] for s in starts])


def rate(call: Callable[[], object], windows: int, seconds: float) -> float:
    """Windows per second of `call` (which forecasts `windows` windows), after a warm-up."""
    call()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        done += windows
    return done / (time.perf_counter() - started)


def plain_session(path: Path, threads: int) -> ort.InferenceSession:
    """One onnxruntime session with `threads` intra-op threads, all graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="0.1 s x 1 repeat: a smoke run")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 0.1, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = LSTMForecaster(len(FEATURES), HORIZON).eval()
    eager = PriceForecaster(net).eval()
    windows = real_windows(1000)
    load_before = load()
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(net, torch.from_numpy(windows), Path(folder) / "m.onnx", {})
        ours = OnnxForecaster(path, threads=args.threads)
        plain = plain_session(path, args.threads)
        for name, batch in CASES:
            x = windows[:batch]
            xt = torch.from_numpy(x)
            calls = {
                "ours": lambda x=x: ours.predict(x),
                "onnxruntime_one_call": lambda x=x: plain.run(["forecast"], {"window": x}),
                "torch_eager": lambda xt=xt: eager(xt),
            }
            samples: dict[str, list[float]] = {k: [] for k in calls}
            with torch.inference_mode():
                for _ in range(args.repeats):
                    for key, call in calls.items():
                        samples[key].append(rate(call, batch, args.seconds))
            rows[name] = {k: median(v) for k, v in samples.items()}
            rows[name]["speedup_vs_torch"] = rows[name]["ours"] / rows[name]["torch_eager"]
            rows[name]["samples"] = samples
    report = {
        "threads": args.threads,
        "seconds_per_sample": args.seconds,
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "windows_per_s": rows,
    }
    output = write("inference-cpu", report, args.output)
    print(f"load average before {load_before}, after {load()}")
    header = [f"case ({args.threads} threads)", "ours", "ORT one call", "torch eager", "speedup"]
    print(
        table(
            header,
            [
                [
                    name,
                    f"{r['ours']:,.0f}",
                    f"{r['onnxruntime_one_call']:,.0f}",
                    f"{r['torch_eager']:,.0f}",
                    f"{r['speedup_vs_torch']:.2f}x",
                ]
                for name, r in rows.items()
            ],
        )
    )
    print(f"windows/s, median of {args.repeats}; wrote {output}")


if __name__ == "__main__":
    main()
