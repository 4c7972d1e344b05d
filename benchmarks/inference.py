"""Batch inference speed: our onnxruntime forecast path vs the same model in torch eager.

Same exported model (default shapes: window 60, 5 features, LSTM 64x2, horizon 5, the default
nine calibrated quantiles; `--point` for a point model), raw windows in, prices (the median and
every quantile, as a forecast job asks for them) out, at batch 1, batch 1,000, and one batched
call for 500 tickers' latest windows (what a nightly forecast job does). Four columns: ours
(`OnnxForecaster`: a single-threaded session, the batch cut into CHUNK-window calls shared by
`threads` threads),
one plain onnxruntime call with `threads` intra-op threads, torch eager under `inference_mode`
with the same thread count (the target's yardstick), and torch eager run the way ours is (the
same chunks on `threads` single-threaded workers), to show how much of the gain is the chunking
rather than the runtime. Each figure is the median of `--repeats` measurements of `--seconds`
each, the columns interleaved so load drift hits them alike. JSON to
benchmarks/results/inference-cpu.json and a Markdown table.

Last, a sweep of windows per call on one thread (the measurement behind predict.CHUNK).

Usage: python benchmarks/inference.py [--seconds 2] [--repeats 5] [--threads N] [--hidden 64]
       [--point] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from common import load, median, table, write

from lstm_pipeline.config import DEFAULT_QUANTILES, DataConfig
from lstm_pipeline.data import FEATURES, load_prices
from lstm_pipeline.export import export_onnx
from lstm_pipeline.model import LSTMForecaster, PriceForecaster
from lstm_pipeline.predict import CHUNK, OnnxForecaster

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


def torch_chunked(model: torch.nn.Module, pool: ThreadPoolExecutor) -> Callable[..., object]:
    """Torch eager the way OnnxForecaster runs: CHUNK-window calls shared by the pool's threads.

    Call it with torch set to 1 thread: changing the count between calls slows torch's other
    calls 10x at batch 1 (OpenMP rebuilds its thread team), so this column is measured apart.
    """

    def one(chunk: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # thread-local: each worker enters it
            return model(chunk)

    def run(x: torch.Tensor) -> object:
        if len(x) <= CHUNK:  # one chunk runs in the calling thread, as in OnnxForecaster
            return one(x)
        return list(pool.map(one, torch.split(x, CHUNK)))  # the outputs stay per chunk

    return run


SWEEP = (8, 16, 32, 64, 128, 256, 1000)  # windows per call in the chunk-size sweep


def chunk_sweep(path: Path, windows: np.ndarray, seconds: float) -> dict[str, float]:
    """Windows/s of one single-threaded session fed `windows` in calls of each SWEEP size:
    the measurement behind predict.CHUNK."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rates = {}
    for size in SWEEP:
        chunks = [windows[i : i + size] for i in range(0, len(windows), size)]
        rates[str(size)] = rate(
            lambda chunks=chunks: [session.run(["forecast"], {"window": c}) for c in chunks],
            len(windows),
            seconds,
        )
    return rates


def samples_of(calls: dict[str, Callable[[], object]], batch: int, args) -> dict[str, list[float]]:
    """`args.repeats` rates of each call, interleaved so load drift hits them alike."""
    samples: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for key, call in calls.items():
                samples[key].append(rate(call, batch, args.seconds))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--hidden", type=int, default=64, help="LSTM hidden size")
    parser.add_argument("--point", action="store_true", help="a point model (no quantiles)")
    parser.add_argument("--quick", action="store_true", help="0.1 s x 1 repeat: a smoke run")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 0.1, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    levels = () if args.point else DEFAULT_QUANTILES
    net = LSTMForecaster(len(FEATURES), HORIZON, hidden_size=args.hidden, quantiles=levels).eval()
    eager = PriceForecaster(net).eval()
    windows = real_windows(1000)
    load_before = load()
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(net, torch.from_numpy(windows), Path(folder) / "m.onnx", {})
        ours = OnnxForecaster(path, threads=args.threads)
        plain = plain_session(path, args.threads)
        outputs = [o.name for o in plain.get_outputs()]  # forecast, and quantiles if any
        for name, batch in CASES:
            x = windows[:batch]
            xt = torch.from_numpy(x)
            samples = samples_of(
                {
                    "ours": lambda x=x: ours.predict_quantiles(x),
                    "onnxruntime_one_call": lambda x=x: plain.run(outputs, {"window": x}),
                    "torch_eager": lambda xt=xt: eager(xt),
                },
                batch,
                args,
            )
            rows[name] = {k: median(v) for k, v in samples.items()}
            rows[name]["speedup_vs_torch"] = rows[name]["ours"] / rows[name]["torch_eager"]
            rows[name]["samples"] = samples
        sweep = chunk_sweep(path, windows, args.seconds / 2)
    torch.set_num_threads(1)
    chunked = torch_chunked(eager, ThreadPoolExecutor(args.threads))
    for name, batch in CASES:
        xt = torch.from_numpy(windows[:batch])
        samples = samples_of({"torch_eager_chunked": lambda xt=xt: chunked(xt)}, batch, args)
        rows[name]["torch_eager_chunked"] = median(samples["torch_eager_chunked"])
        rows[name]["samples"] |= samples
    report = {
        "hidden_size": args.hidden,
        "quantile_levels": list(levels),
        "chunk_sweep_1thread": sweep,
        "threads": args.threads,
        "seconds_per_sample": args.seconds,
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "windows_per_s": rows,
    }
    output = write("inference-cpu", report, args.output)
    print(f"load average before {load_before}, after {load()}")
    header = [
        f"case ({args.threads} threads)",
        "ours",
        "ORT one call",
        "torch eager",
        "ours / torch",
        "torch eager, chunked like ours",
    ]
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
                    f"{r['torch_eager_chunked']:,.0f}",
                ]
                for name, r in rows.items()
            ],
        )
    )
    print(f"windows/s, median of {args.repeats}; wrote {output}")
    sizes = ", ".join(f"{size}: {r:,.0f}" for size, r in sweep.items())
    print(f"one thread, windows/s by windows per call: {sizes}")


if __name__ == "__main__":
    main()
