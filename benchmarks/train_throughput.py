"""Training throughput on the same shapes, in one run:

(a) our loop: `train.train_epoch` over device-resident `unfold` views, batches drawn by index
    (on CUDA its step is a replayed CUDA graph; `ours_eager` is the same loop without it);
(b) the bare `nn.LSTM` forward+backward kernel at the same batch size (the ceiling);
(c) a textbook loop: materialised windows in `DataLoader(TensorDataset)`, moved per batch;
(d) `ours_quantile`: (a) with the quantile head (the default levels) and the pinball loss, so
    `quantile_vs_point` is the head's cost measured in the same run;
(e) `precisions`: (a) and (b) in fp32 and under bf16 autocast side by side, `bf16_vs_fp32` their
    ratios; where the device has no native bf16 (a CPU without AMX or AVX-512 BF16) the report
    says so in `bf16_unsupported` instead.

Also the memory the training windows take as the data grows: our views need O(rows), the
materialised windows O(rows x window). Writes JSON (default benchmarks/results/) and prints a
markdown table. Usage: python benchmarks/train_throughput.py [--device auto] [--seconds 10]
[--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import machine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lstm_pipeline.config import (
    DEFAULT_QUANTILES,
    SAMPLE_TICKERS,
    DataConfig,
    FeatureConfig,
    TrainConfig,
)
from lstm_pipeline.data import FEATURES, load_prices
from lstm_pipeline.errors import InputError
from lstm_pipeline.features import WindowSet, build_window_sets
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.runtime import Runtime, make_runtime
from lstm_pipeline.train import train_epoch
from lstm_pipeline.train_step import make_step


def sample_train_windows(features: FeatureConfig, copies: int = 1) -> WindowSet:
    """The bundled sample's training split; `copies` > 1 repeats the tickers to grow the data."""
    cfg = DataConfig(source="sample")
    prices = {t: load_prices(t, cfg) for t in SAMPLE_TICKERS}
    grown = {f"{t}{i}": p for i in range(copies) for t, p in prices.items()}
    return build_window_sets(grown, features)["train"]


def timed(step: Callable[[], int], seconds: float, device: torch.device) -> float:
    """Windows per second of `step` (returns windows done), after one warm-up call."""
    step()
    sync(device)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += step()
    sync(device)
    return done / (time.perf_counter() - started)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def new_model(
    args: argparse.Namespace, device: torch.device, quantiles: tuple[float, ...] = ()
) -> LSTMForecaster:
    torch.manual_seed(0)
    return LSTMForecaster(
        len(FEATURES), args.horizon, args.hidden, args.layers, dropout=0.2, quantiles=quantiles
    ).to(device)


def ours(
    args: argparse.Namespace,
    windows: WindowSet,
    runtime: Runtime,
    graphs: bool,
    quantiles: tuple[float, ...] = (),
) -> float:
    """Windows/s of our loop; with `quantiles`, of the quantile head (runtime's loss: pinball)."""
    model = new_model(args, runtime.device, quantiles)
    data = windows.to(runtime.device)
    cfg = TrainConfig(batch_size=args.batch_size, cuda_graphs=graphs)
    step, _ = make_step(model, data, cfg, runtime)
    generator = torch.Generator().manual_seed(0)

    def epoch() -> int:
        return train_epoch(model, data, step, args.batch_size, generator)[1]

    return timed(epoch, args.seconds, runtime.device)


def bare_kernel(args: argparse.Namespace, runtime: Runtime) -> float:
    lstm = nn.LSTM(len(FEATURES), args.hidden, args.layers, batch_first=True, dropout=0.2)
    lstm = lstm.to(runtime.device).train()
    x = torch.randn(args.batch_size, args.window, len(FEATURES), device=runtime.device)

    def step() -> int:
        with runtime.autocast():
            out, _ = lstm(x)
        out.float().sum().backward()
        return args.batch_size

    return timed(step, args.seconds, runtime.device)


def textbook_dataloader(args: argparse.Namespace, windows: WindowSet, runtime: Runtime) -> float:
    idx = torch.arange(len(windows))
    dataset = TensorDataset(windows.inputs(idx).contiguous(), windows.targets)  # materialised
    cuda = runtime.device.type == "cuda"
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, pin_memory=cuda)
    model = new_model(args, runtime.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def epoch() -> int:
        model.train()
        for x, y in loader:
            x, y = x.to(runtime.device, non_blocking=cuda), y.to(runtime.device, non_blocking=cuda)
            with runtime.autocast():
                loss = runtime.loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        return len(dataset)

    return timed(epoch, args.seconds, runtime.device)


def window_memory(features: FeatureConfig, device: torch.device) -> list[dict[str, float]]:
    """Bytes held by our views vs materialised windows as the number of tickers grows."""
    rows = []
    for copies in (1, 2, 4):
        windows = sample_train_windows(features, copies)
        ours_bytes = sum(
            t.numel() * t.element_size() for t in (windows.values, windows.starts, windows.targets)
        )
        materialised = (
            len(windows) * features.window * len(FEATURES) * 4 + windows.targets.numel() * 4
        )
        row = {
            "tickers": 6 * copies,
            "windows": len(windows),
            "ours_mb": ours_bytes / 2**20,
            "materialised_mb": materialised / 2**20,
        }
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            moved = windows.to(device)
            batch = moved.inputs(torch.arange(256, device=device))
            row["cuda_peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
            del moved, batch
        rows.append(row)
    return rows


def precisions_side_by_side(
    args: argparse.Namespace, windows: WindowSet, measured: Runtime, results: dict[str, float]
) -> tuple[dict[str, dict[str, float] | None], str | None]:
    """(a) and (b) in fp32 and bf16 (the precision `results` were measured in is reused);
    a precision the device cannot run natively is None, with the reason."""
    side: dict[str, dict[str, float] | None] = {}
    unsupported = None
    for precision in ("fp32", "bf16"):
        try:
            runtime = make_runtime(
                TrainConfig(device=args.device, precision=precision), args.hidden
            )
        except InputError as exc:
            side[precision], unsupported = None, str(exc)
            continue
        if runtime.autocast_dtype == measured.autocast_dtype:
            side[precision] = {k: results[k] for k in ("ours", "bare_kernel")}
        else:
            ours_rate = ours(args, windows, runtime, graphs=True)
            side[precision] = {"ours": ours_rate, "bare_kernel": bare_kernel(args, runtime)}
    return side, unsupported


def bf16_vs_fp32(side: dict[str, dict[str, float] | None]) -> dict[str, float] | None:
    fp32, bf16 = side["fp32"], side["bf16"]
    if fp32 is None or bf16 is None:
        return None
    return {k: bf16[k] / fp32[k] for k in fp32}


def print_report(report: dict, output: Path) -> None:
    results = report["windows_per_s"]
    print(f"| loop | windows/s ({report['device_name']}, {report['precision']}) |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} |")
    print(
        f"ours / bare kernel = {report['ours_vs_bare_kernel']:.2f}, "
        f"ours / dataloader = {report['ours_vs_dataloader']:.2f}, "
        f"quantile head / point = {report['quantile_vs_point']:.3f}"
    )
    print("| precision | ours | bare kernel |\n|---|---|---|")
    for precision, rates in report["precisions"].items():
        if rates is None:
            print(f"| {precision} | not native here | - |")
        else:
            print(f"| {precision} | {rates['ours']:,.0f} | {rates['bare_kernel']:,.0f} |")
    ratio = report["bf16_vs_fp32"]
    if ratio is None:
        print(f"no bf16 comparison: {report['bf16_unsupported']}")
    else:
        print(f"bf16 / fp32: ours {ratio['ours']:.2f}x, bare kernel {ratio['bare_kernel']:.2f}x")
    for row in report["memory"]:
        print(row)
    print(f"wrote {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="of (a)-(d); (a) and (b) are also measured in the other precision",
    )
    parser.add_argument("--quick", action="store_true", help="hidden 8, 0.05 s: a smoke run")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.hidden = 0.05, 8

    train_cfg = TrainConfig(device=args.device, precision=args.precision)
    runtime = make_runtime(train_cfg, args.hidden)
    quantile_runtime = make_runtime(train_cfg, args.hidden, DEFAULT_QUANTILES)
    features = FeatureConfig(window=args.window, horizon=args.horizon)
    windows = sample_train_windows(features)
    results = {
        "ours": ours(args, windows, runtime, graphs=True),
        "ours_quantile": ours(args, windows, quantile_runtime, True, DEFAULT_QUANTILES),
        "bare_kernel": bare_kernel(args, runtime),
        "dataloader": textbook_dataloader(args, windows, runtime),
    }
    if runtime.device.type == "cuda":  # what the CUDA graph adds over our eager loop
        results["ours_eager"] = ours(args, windows, runtime, graphs=False)
    side, unsupported = precisions_side_by_side(args, windows, runtime, results)
    device_name = (
        torch.cuda.get_device_name(runtime.device)
        if runtime.device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    report = {
        "benchmark": "train_throughput",
        "machine": machine(),
        "device": str(runtime.device),
        "device_name": device_name,
        "precision": "bf16" if runtime.autocast_dtype else "fp32",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "shape": {
            k: getattr(args, k) for k in ("batch_size", "window", "horizon", "hidden", "layers")
        },
        "train_windows": len(windows),
        "windows_per_s": results,
        "ours_vs_bare_kernel": results["ours"] / results["bare_kernel"],
        "ours_vs_dataloader": results["ours"] / results["dataloader"],
        "quantiles": list(DEFAULT_QUANTILES),
        "quantile_vs_point": results["ours_quantile"] / results["ours"],
        "precisions": side,
        "bf16_vs_fp32": bf16_vs_fp32(side),
        "bf16_unsupported": unsupported,
        "memory": window_memory(features, runtime.device),
    }
    output = (
        args.output
        or Path(__file__).parent / "results" / f"train_throughput-{runtime.device.type}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report, output)


if __name__ == "__main__":
    main()
