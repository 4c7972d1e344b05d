"""Batch inference speed: our onnxruntime forecast path vs the same model in torch eager.

Same exported model (default shapes: window 60, 5 features, LSTM 64x2, horizon 5), raw
windows in, prices out, at batch 1, batch 1,000, and one batched call for 500 tickers'
latest windows (what a nightly forecast job does). JSON to benchmarks/results/ and a table.
Usage: python benchmarks/inference.py [--seconds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lstm_pipeline.config import DataConfig
from lstm_pipeline.data import FEATURES, load_prices
from lstm_pipeline.export import export_onnx
from lstm_pipeline.model import LSTMForecaster, PriceForecaster
from lstm_pipeline.predict import OnnxForecaster

WINDOW, HORIZON = 60, 5


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = LSTMForecaster(len(FEATURES), HORIZON).eval()
    eager = PriceForecaster(net).eval()
    windows = real_windows(1000)
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(net, torch.from_numpy(windows), Path(folder) / "m.onnx", {})
        session = OnnxForecaster(path)
        rows = {}
        for name, batch in (("batch 1", 1), ("batch 1,000", 1000), ("500 tickers", 500)):
            x = windows[:batch]
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                torch_rate = rate(lambda xt=xt: eager(xt), batch, args.seconds)
            onnx_rate = rate(lambda x=x: session.predict(x), batch, args.seconds)
            rows[name] = {
                "onnxruntime": onnx_rate,
                "torch_eager": torch_rate,
                "speedup": onnx_rate / torch_rate,
            }
    report = {
        "benchmark": "inference",
        "machine": platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "windows_per_s": rows,
    }
    output = args.output or Path(__file__).parent / "results" / "inference-cpu.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"| case ({args.threads} threads) | onnxruntime windows/s | torch eager | speedup |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['onnxruntime']:,.0f} | {r['torch_eager']:,.0f} | {r['speedup']:.2f}x |"
        )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
