"""Walk-forward backtests of model variants on the bundled sample, each beside naive.

The honest answer to "does any of this beat tomorrow = today?": for every variant, the
pooled out-of-sample MASE, directional accuracy against the base rate, and the
Diebold-Mariano p-value per horizon. JSON to benchmarks/results/ and a markdown table.
Usage: python benchmarks/backtest_sample.py [--folds 4] [--fold-days 126] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from lstm_pipeline import backtest, data
from lstm_pipeline.config import build_config

VARIANTS: dict[str, dict[str, Any]] = {
    "default (LSTM 64x2, window 60)": {},
    "derived features": {"model__derived_features": True},
    "GRU": {"model__cell": "gru"},
    "huber loss": {"train__loss": "huber"},
    "window 20": {"features__window": 20},
    "LSTM 128x1, weight decay": {
        "model__hidden_size": 128,
        "model__num_layers": 1,
        "train__weight_decay": 0.01,
    },
}


def run_variant(overrides: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cfg = build_config(data__source="sample", train__device=args.device, **overrides)
    prices = {t: data.load_prices(t, cfg.data) for t in cfg.data.tickers}
    started = time.perf_counter()
    folds = [
        backtest.run_fold(prices, cfg, k, args.folds, args.fold_days) for k in range(args.folds)
    ]
    overall, _ = backtest.pooled_scores(folds)
    horizon = cfg.features.horizon
    return {
        "seconds": time.perf_counter() - started,
        "fold_mase": [f.metrics["test_mase"] for f in folds],
        **{
            k: overall[k]
            for k in (
                "test_mae",
                "naive_test_mae",
                "test_mase",
                "test_directional_accuracy",
                "test_direction_base_rate",
            )
        },
        "dm_pvalue_h1": overall["test_dm_pvalue_h1"],
        f"dm_pvalue_h{horizon}": overall[f"test_dm_pvalue_h{horizon}"],
        "dm_stat_h1": overall["test_dm_stat_h1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--fold-days", type=int, default=126)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = {name: run_variant(overrides, args) for name, overrides in VARIANTS.items()}
    output = args.output or Path(__file__).parent / "results" / "backtest_sample.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "backtest_sample",
        "folds": args.folds,
        "fold_days": args.fold_days,
        "variants": results,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print("| variant | MASE | MAE | naive MAE | direction | base rate | DM p (h=1) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['test_mase']:.4f} | {r['test_mae']:.3f} | {r['naive_test_mae']:.3f} "
            f"| {r['test_directional_accuracy']:.1%} | {r['test_direction_base_rate']:.1%} "
            f"| {r['dm_pvalue_h1']:.3f} |"
        )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
