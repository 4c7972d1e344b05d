"""Walk-forward backtests of model variants on the bundled sample, each beside naive.

The honest answer to "does any of this beat tomorrow = today?": for every variant, the
pooled out-of-sample MASE, directional accuracy against the base rate, and the panel
Diebold-Mariano p-value per horizon; for quantile models, the intervals per horizon beside
their nominal coverage and the rw / ewma baselines (CRPS skill with its DM p-value, Kupiec,
coverage per volatility tercile) and the issue's goals, met or not. JSON to
benchmarks/results/ and markdown tables.
Usage: python benchmarks/backtest_sample.py [--folds 4] [--fold-days 126] [--device auto]
       [--only default]
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
    "point model (MSE loss)": {"model__quantiles": ()},
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
        "mase_drift": overall["test_mase_drift"],
        "intervals": interval_summary(overall, horizon),
    }


def interval_summary(overall: dict[str, float], horizon: int) -> dict[str, Any] | None:
    """Per-horizon interval scores, tercile coverage and the goals (issue 14), or None for a
    point model."""
    if "test_coverage_80" not in overall:
        return None
    by_h = {
        h: {key: overall[f"test_{key}_h{h}"] for key in backtest.INTERVAL_TESTS}
        for h in range(1, horizon + 1)
    }
    terciles = {t: overall[f"test_coverage_80_vol_{t}"] for t in ("low", "mid", "high")}
    goals = {
        "coverage_80 within 78.5-81.5% at every horizon": all(
            0.785 <= s["coverage_80"] <= 0.815 for s in by_h.values()
        ),
        "coverage_95 within 94-96% at every horizon": all(
            0.94 <= s["coverage_95"] <= 0.96 for s in by_h.values()
        ),
        "each volatility tercile within 3 points of 80%": all(
            abs(c - 0.8) <= 0.03 for c in terciles.values()
        ),
        "CRPS skill >= 3% vs rw": overall["test_crpss_rw"] >= 0.03,
        "CRPS skill >= 0 vs ewma": overall["test_crpss_ewma"] >= 0,
        "DM p < 0.05 vs rw at one horizon or more": any(
            s["dm_crps_rw_pvalue"] < 0.05 and s["crpss_rw"] > 0 for s in by_h.values()
        ),
    }
    pooled = {
        key: overall[f"test_{key}"]
        for key in ("coverage_80", "coverage_95", "crps", "crpss_rw", "crpss_ewma")
    }
    baselines = {
        f"{name}_{key}": overall[f"{name}_test_{key}"]
        for name in ("rw", "ewma")
        for key in ("crps", "coverage_80", "coverage_95")
    }
    return {
        "pooled": pooled,
        "baselines": baselines,
        "by_horizon": by_h,
        "coverage_80_by_volatility_tercile": terciles,
        "goals": goals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--fold-days", type=int, default=126)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--only", help="run only the variants whose name starts with this")
    args = parser.parse_args()
    chosen = {n: o for n, o in VARIANTS.items() if not args.only or n.startswith(args.only)}
    results = {name: run_variant(overrides, args) for name, overrides in chosen.items()}
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
    for name, r in results.items():
        if r["intervals"] is not None:
            print_intervals(name, r["intervals"])
    print(f"wrote {output}")


def print_intervals(name: str, intervals: dict[str, Any]) -> None:
    """The variant's intervals per horizon as a markdown table, then its goals."""
    print(f"\n{name}: intervals (nominal 80% / 95%)\n")
    print(
        "| h | 80% covers | 95% covers | Kupiec 95% p | CRPS (bp) | skill vs rw | DM p "
        "| skill vs ewma | DM p |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for h, s in intervals["by_horizon"].items():
        print(
            f"| {h} | {s['coverage_80']:.1%} | {s['coverage_95']:.1%} | "
            f"{s['kupiec_95_pvalue']:.3f} | {s['crps']:.1f} | {s['crpss_rw']:+.1%} | "
            f"{s['dm_crps_rw_pvalue']:.3f} | {s['crpss_ewma']:+.1%} | "
            f"{s['dm_crps_ewma_pvalue']:.3f} |"
        )
    terciles = intervals["coverage_80_by_volatility_tercile"]
    print(
        "\n80% coverage by volatility tercile: "
        + ", ".join(f"{t} {c:.1%}" for t, c in terciles.items())
    )
    for goal, met in intervals["goals"].items():
        print(f"- {goal}: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
