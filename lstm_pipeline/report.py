"""Text artifacts of a training run: the config YAML, the metrics table, the model card and the
short summary a scheduler shows (Prefect's flow-run artifact)."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import yaml

from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.evaluate import TABLE_COLUMNS
from lstm_pipeline.provenance import redact


def config_yaml(cfg: PipelineConfig) -> str:
    """The run's whole config as YAML that `--config` accepts back (credentials blanked out)."""
    tree = cfg.model_dump(mode="json")
    tree["tracking"]["tracking_uri"] = redact(tree["tracking"]["tracking_uri"])
    return yaml.safe_dump(tree, sort_keys=False)


def table_csv(rows: list[dict[str, Any]]) -> str:
    """Rows of evaluate.scores_by_ticker_horizon or pipeline.scores_by_ticker (and any columns
    added to them, such as the interval scores) as CSV text, floats to 6 significant digits:
    the TABLE_COLUMNS they have, in that order, then the others."""
    out = io.StringIO()
    first = rows[0] if rows else dict.fromkeys(TABLE_COLUMNS)
    columns = [key for key in TABLE_COLUMNS if key in first]
    columns += [key for key in first if key not in TABLE_COLUMNS]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return out.getvalue()


def model_card(
    cfg: PipelineConfig, data_tags: dict[str, str], metrics: dict[str, float], run_id: str
) -> str:
    """A short markdown card: data, config, scores beside naive, and what the model cannot do."""
    f, m, t = cfg.features, cfg.model, cfg.train
    lines = [
        f"# Model card: {cfg.tracking.model_name} (run `{run_id}`)",
        "",
        "## Data",
        f"- Tickers: {data_tags['data.tickers']} from source `{cfg.data.source}`; "
        f"{data_tags['data.rows']} daily bars, {data_tags['data.first_date']} to "
        f"{data_tags['data.cutoff']} (cut-off); content hash `{data_tags['data.sha256']}`.",
        "- Chronological split per ticker: train "
        f"{1 - f.val_frac - f.calib_frac - f.test_frac:.0%} / validation {f.val_frac:.0%} / "
        f"calibration {f.calib_frac:.0%} / test {f.test_frac:.0%}; "
        f"{metrics['train_windows']:.0f} / {metrics['val_windows']:.0f} / "
        f"{metrics['calib_windows']:.0f} / {metrics['test_windows']:.0f} windows; no "
        "window crosses a split.",
        "",
        "## Model and config",
        f"- {m.cell.upper()}, hidden {m.hidden_size}, {m.num_layers} layer(s), dropout "
        f"{m.dropout}{', derived features' if m.derived_features else ''}; input {f.window} "
        f"trading days of raw OHLCV, output the closes 1 to {f.horizon} trading day(s) ahead "
        "(prices; normalisation is inside the ONNX graph).",
        f"- AdamW lr {t.lr} (weight decay {t.weight_decay}, schedule {t.lr_schedule}), "
        f"{t.loss} loss, batch {t.batch_size}, early stopping (patience {t.patience}): best "
        f"epoch {metrics['best_epoch']:.0f} of {metrics['stopped_epoch']:.0f}; seed {t.seed}.",
        "- Full config: `config.yaml` in the run's artifacts.",
        "",
        "## Scores beside the naive forecast (next close = last close)",
        "",
        "| split | MAE | naive MAE | MASE | direction right | base rate |",
        "|---|---|---|---|---|---|",
        *(_score_row(split, metrics) for split in ("val", "test")),
        "",
        "Per ticker: `metrics/test_by_ticker.csv`; per ticker and horizon: "
        f"`metrics/test_by_ticker_horizon.csv`. {_verdict(metrics)}",
        *interval_table(metrics),
        "",
        "## Limitations",
        "- Learns from past prices and volume only: no news, earnings or macro data. Not advice.",
        "- The validation split also chose the best epoch, so validation scores are optimistic; "
        "the test span is the honest figure, and it is one span, not a walk-forward backtest.",
        "- MASE near 1 means no practical edge over the naive forecast; a directional accuracy "
        "at the base rate means the model mostly follows the drift.",
        "- Scores hold for the tickers and dates above; other tickers or regimes are untested.",
    ]
    return "\n".join(lines) + "\n"


def run_summary(
    model_name: str,
    version: str,
    metrics: dict[str, float],
    promoted: bool,
    reason: str,
    run_link: str,
) -> str:
    """Markdown for whoever checks a scheduled run: scores beside naive, the promotion
    decision and where the whole run is."""
    outcome = "promoted to `champion`" if promoted else "kept as `challenger` (not promoted)"
    lines = [
        f"# {model_name} v{version}: {outcome}",
        "",
        f"**Promotion decision:** {reason}",
        "",
        "| split | MAE | naive MAE | MASE | direction right | base rate |",
        "|---|---|---|---|---|---|",
        *(_score_row(split, metrics) for split in ("val", "test")),
        "",
        _verdict(metrics),
        *interval_table(metrics),
        "",
        f"Best epoch {metrics['best_epoch']:.0f} of {metrics['stopped_epoch']:.0f}, "
        f"{metrics['train_windows_per_s']:,.0f} training windows/s.",
        "",
        f"[The MLflow run]({run_link}): config, per-epoch curves, plots, model card.",
    ]
    return "\n".join(lines) + "\n"


SUMMARY_TICKERS = 10  # the run summary's worst and best tickers each; the CSV holds all
_TICKER_COLUMNS = {  # per-ticker CSV column -> (heading, format), in the summary's order
    "windows": ("windows", ",.0f"),
    "mae": ("MAE", ".4f"),
    "naive_mae": ("naive MAE", ".4f"),
    "mase": ("MASE", ".3f"),
    "coverage_80": ("80% interval covers", ".1%"),
    "crpss_rw": ("CRPS skill vs rw", "+.1%"),
}


def ticker_extremes(table: str, shown: int = SUMMARY_TICKERS) -> list[str]:
    """Markdown lines from the per-ticker CSV (`metrics/test_by_ticker.csv`), bounded whatever
    the number of tickers: all of them when they are at most 2 x `shown`, else the `shown`
    worst and the `shown` best by test MASE (ties by name; a NaN MASE ranks neither)."""
    rows = list(csv.DictReader(io.StringIO(table)))
    if len(rows) <= 2 * shown:
        worst_first = sorted(rows, key=lambda r: _by_mase(r, worst_first=True))
        parts = [(f"## Tickers by test MASE, worst first (all {len(rows)})", worst_first)]
    else:
        scored = [r for r in rows if not math.isnan(float(r["mase"]))]
        parts = [
            (f"## The {shown} {end} of {len(rows)} tickers by test MASE", ranked[:shown])
            for end, ranked in (
                ("worst", sorted(scored, key=lambda r: _by_mase(r, worst_first=True))),
                ("best", sorted(scored, key=lambda r: _by_mase(r, worst_first=False))),
            )
        ]
    columns = [key for key in _TICKER_COLUMNS if rows and key in rows[0]]
    heading = "| " + " | ".join(["ticker", *(_TICKER_COLUMNS[k][0] for k in columns)]) + " |"
    lines = []
    for title, part in parts:
        lines += ["", title, "", heading, "|---" * (len(columns) + 1) + "|"]
        for row in part:
            cells = (f"{float(row[k]):{_TICKER_COLUMNS[k][1]}}" for k in columns)
            lines.append(f"| {row['ticker']} | " + " | ".join(cells) + " |")
    everything = (
        f"All {len(rows)} tickers: `metrics/test_by_ticker.csv` in the MLflow run (per ticker "
        "and horizon: `metrics/test_by_ticker_horizon.csv`)."
    )
    return [*lines, "", everything]


def _by_mase(row: dict[str, str], worst_first: bool) -> tuple[bool, float, str]:
    """A per-ticker row's place by MASE, ties by name; a NaN MASE (no windows) goes last."""
    mase = float(row["mase"])
    if math.isnan(mase):  # NaN compares false with everything: it would scramble the order
        return True, 0.0, row["ticker"]
    return False, -mase if worst_first else mase, row["ticker"]


def _score_row(split: str, metrics: dict[str, float]) -> str:
    return (
        f"| {split} | {metrics[f'{split}_mae']:.4f} | {metrics[f'naive_{split}_mae']:.4f} | "
        f"{metrics[f'{split}_mase']:.4f} | {metrics[f'{split}_directional_accuracy']:.1%} | "
        f"{metrics[f'{split}_direction_base_rate']:.1%} |"
    )


def interval_table(metrics: dict[str, float]) -> list[str]:
    """Markdown lines: each split's interval coverage beside its nominal level and its CRPS
    beside the two baselines'; none for a point model."""
    if "test_coverage_80" not in metrics:
        return []
    lines = [
        "",
        "## Intervals beside their nominal coverage and the baselines",
        "",
        "| split | 80% interval covers | 95% interval covers | CRPS (bp) | rw CRPS | ewma CRPS "
        "| skill vs rw | skill vs ewma |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in ("val", "test"):
        lines.append(
            f"| {s} | {metrics[f'{s}_coverage_80']:.1%} (80%) | "
            f"{metrics[f'{s}_coverage_95']:.1%} (95%) | {metrics[f'{s}_crps']:.1f} | "
            f"{metrics[f'rw_{s}_crps']:.1f} | {metrics[f'ewma_{s}_crps']:.1f} | "
            f"{metrics[f'{s}_crpss_rw']:+.1%} | {metrics[f'{s}_crpss_ewma']:+.1%} |"
        )
    lines.append(
        f"Calibrated on {metrics['calib_windows']:.0f} windows after validation "
        "(conformalised quantile regression); validation and test were not calibrated on."
    )
    return lines


def _verdict(metrics: dict[str, float]) -> str:
    mase, hits = metrics["test_mase"], metrics["test_directional_accuracy"]
    base = metrics["test_direction_base_rate"]
    edge = "beats" if mase < 1 else "does not beat"
    return (
        f"On the test span the model {edge} the naive forecast (MASE {mase:.3f}, below 1 "
        f"beats it) and gets the direction right {hits:.1%} of the time against a base "
        f"rate of {base:.1%}."
    )
