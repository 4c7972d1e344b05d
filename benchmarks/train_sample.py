"""The default training job on the bundled sample, without Prefect or MLflow: wall time,
epochs, throughput and test scores beside naive. JSON to benchmarks/results/.

Usage: python benchmarks/train_sample.py [--device auto] [--max-epochs 30]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lstm_pipeline import data, pipeline
from lstm_pipeline.config import build_config
from lstm_pipeline.features import build_window_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    cfg = build_config(
        data__source="sample", train__device=args.device, train__max_epochs=args.max_epochs
    )
    started = time.perf_counter()
    prices = {t: data.load_prices(t, cfg.data) for t in cfg.data.tickers}
    windows = build_window_sets(prices, cfg.features)
    loaded = time.perf_counter()
    result = pipeline.train_model(windows, cfg)
    trained = time.perf_counter()
    metrics = pipeline.evaluate_model(result, windows, prices).metrics
    report = {
        "benchmark": "train_sample",
        "device": result.device,
        "device_name": torch.cuda.get_device_name() if result.device.startswith("cuda") else "cpu",
        "precision": result.precision,
        "threads": result.threads,
        "data_seconds": loaded - started,
        "train_seconds": trained - loaded,
        "epochs": result.stopped_epoch,
        "best_epoch": result.best_epoch,
        "train_windows_per_s": result.train_windows_per_s,
        **{
            k: metrics[k]
            for k in (
                "test_mae",
                "naive_test_mae",
                "test_mase",
                "val_mase",
                "test_directional_accuracy",
                "test_direction_base_rate",
            )
        },
    }
    kind = result.device.split(":")[0]
    output = args.output or Path(__file__).parent / "results" / f"train_sample-{kind}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
