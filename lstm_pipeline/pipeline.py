"""The training job's stages as plain functions; flows/training.py runs each one as a task."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from lstm_pipeline import drift, plots, report
from lstm_pipeline.baseline_workers import (
    EVALUATED,
    BaselinesAside,
    baseline_args,
    baselines_aside,
    closes_of,
)
from lstm_pipeline.baselines import Baselines, compute_baselines
from lstm_pipeline.calibrate import fit_calibration
from lstm_pipeline.config import DEFAULT_QUANTILES, PipelineConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import TrainingDivergedError, one_line
from lstm_pipeline.evaluate import error_ratio, score_forecasts, scores_by_ticker_horizon
from lstm_pipeline.export import export_onnx
from lstm_pipeline.features import CLOSE, SPLITS, VOLUME, WindowSet
from lstm_pipeline.intervals import (
    INTERVAL_COLUMNS,
    drift_scores,
    interval_scores_by_ticker_horizon,
    observed_levels,
    score_intervals,
)
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.train import EpochCallback, FitResult, Predictions, fit, predict_prices
from lstm_pipeline.validate import day as _day

EXPORT_BATCH = 1000  # windows in the export sample: parity is checked at batch 1 and this
ZOOM_DAYS = 120  # the zoomed actual-vs-forecast plot: recent enough to see daily gaps
FAN_TICKERS = 4  # fan-chart panels, however many tickers were trained
FORECAST_TICKERS = 6  # actual-vs-forecast panels: the whole six-ticker sample, else a chosen six
MAX_TAG_CHARS = 8000  # MLflow's limit on a tag value
_ONE_FIT_AT_A_TIME = threading.Lock()  # see train_model


def data_summary(
    prices_by_ticker: dict[str, pd.DataFrame], skipped: Mapping[str, BaseException] | None = None
) -> dict[str, str]:
    """Run tags describing the training data, so runs on the same data can be told apart.

    `data.sha256` hashes every ticker's dates and values; `data.per_ticker` lists
    `TICKER:first..last:rows` (MLflow keys cannot hold every ticker character, so one tag);
    `data.origins` says where each series came from; `data.skipped` the tickers left out.
    """
    digest = hashlib.sha256()
    for ticker, prices in prices_by_ticker.items():
        digest.update(ticker.encode())
        digest.update(pd.util.hash_pandas_object(prices).to_numpy().tobytes())
    frames = prices_by_ticker.values()
    tags = {
        "data.tickers": ",".join(prices_by_ticker),
        "data.rows": str(sum(len(p) for p in frames)),
        "data.first_date": min(p.index[0] for p in frames).date().isoformat(),
        "data.cutoff": max(p.index[-1] for p in frames).date().isoformat(),
        "data.sha256": digest.hexdigest()[:16],
        "data.per_ticker": ";".join(
            f"{t}:{_day(p.index[0])}..{_day(p.index[-1])}:{len(p)}"
            for t, p in prices_by_ticker.items()
        ),
        "data.origins": ";".join(
            f"{t}:{p.attrs.get('origin', '?')}" for t, p in prices_by_ticker.items()
        ),
    }
    if skipped:
        tags["data.skipped"] = ";".join(one_line(e) for e in skipped.values())
    return {k: v[:MAX_TAG_CHARS] for k, v in tags.items()}


def dataset_sample(prices_by_ticker: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """The run's dataset input as `Run.log_dataset` takes it: the rows of the long frame
    (training_frame) that decide its schema (each ticker's first row and any row with a value
    missing), and the number of all its rows. Building the whole frame only to log it took 0.1-2
    s at 500 tickers (1.26M rows of fresh memory)."""
    sample = {ticker: _schema_rows_of(prices) for ticker, prices in prices_by_ticker.items()}
    return training_frame(sample), sum(len(p) for p in prices_by_ticker.values())


def _schema_rows_of(prices: pd.DataFrame) -> pd.DataFrame:
    """A ticker's first row and its rows with a value missing (date or feature)."""
    keep = prices[list(FEATURES)].isna().to_numpy().any(axis=1) | np.asarray(prices.index.isna())
    keep[:1] = True
    return prices.iloc[np.flatnonzero(keep)]


def training_frame(prices_by_ticker: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All tickers' prices in one long frame (Date, ticker, FEATURES): the run's dataset.

    Built column by column from the arrays (a frame per ticker took 1.5 s at 500 tickers)."""
    frames = prices_by_ticker.values()
    rows_of = np.repeat(np.arange(len(frames)), [len(p) for p in frames])  # [T] ticker of a row
    return pd.DataFrame(
        {
            "Date": np.concatenate([p.index.to_numpy() for p in frames]),
            # taken from the names, not a string made per row (0.3 s at 500 tickers)
            "ticker": pd.Series(list(prices_by_ticker), dtype="str").take(rows_of).array,
            **{c: np.concatenate([p[c].to_numpy() for p in frames]) for c in FEATURES},
        }
    )


def train_model(
    windows: dict[str, WindowSet], cfg: PipelineConfig, on_epoch_end: EpochCallback | None = None
) -> FitResult:
    """A fresh LSTMForecaster from cfg.model, fitted with early stopping on the val split; a
    quantile model's intervals are then calibrated on the calib split."""
    # One fit at a time per process: torch's generator (initial weights, dropout masks) is
    # process-wide, so fits in parallel threads would draw from each other's seeded stream and
    # stop being reproducible. On a CPU one fit already uses every core; parallel fits (folds,
    # trials) run in separate processes on a Dask task runner.
    with _ONE_FIT_AT_A_TIME:
        torch.manual_seed(cfg.train.seed)  # the initial weights, too, follow the seed
        net = LSTMForecaster(len(FEATURES), cfg.features.horizon, **cfg.model.model_dump())
        result = fit(net, windows["train"], windows["val"], cfg.train, on_epoch_end)
    if net.quantiles:
        result.calibration = fit_calibration(result.model, windows["calib"])
    return result


def score_split(
    model: LSTMForecaster,
    data: WindowSet,
    prices_by_ticker: Mapping[str, pd.DataFrame],
    prefix: str,
    baselines: Callable[[], Baselines] | None = None,
) -> tuple[dict[str, float], Predictions, Baselines]:
    """One split's scores beside naive and drift and, with quantiles, beside the rw and ewma
    baselines on the same windows (from each ticker's closes up to each origin); `baselines`:
    where theirs are under way already (a worker process's), called once the model's
    predictions are made."""
    predictions = predict_prices(model, data)
    refuse_non_finite(predictions, prefix)
    levels = model.quantiles or DEFAULT_QUANTILES
    if baselines is None:
        closes = closes_of(prices_by_ticker, [data])
        base = compute_baselines(*baseline_args(levels, data, closes))
    else:
        base = baselines()
    forecast, actual, last_close, quantiles = predictions
    metrics = score_forecasts(forecast, actual, last_close, prefix=prefix)
    if quantiles is None:
        metrics |= drift_scores(forecast, actual, base, prefix)
    else:  # the interval scores include the drift scores
        metrics |= score_intervals(quantiles, levels, actual, last_close, forecast, base, prefix)
    return metrics, predictions, base


def refuse_non_finite(predictions: Predictions, split: str) -> None:
    """TrainingDivergedError when a trained model's prices are not finite: a pinball loss grows
    only linearly, so weights can blow up (a huge lr) while every epoch's loss stays finite."""
    parts = [predictions.forecast] + [q for q in (predictions.quantiles,) if q is not None]
    if not all(np.isfinite(part).all() for part in parts):
        raise TrainingDivergedError(
            f"the trained model's {split} forecasts are not finite prices (its weights blew "
            "up; a lower train.lr helps)"
        )


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]  # val_* and test_* scores beside naive_*, plus training figures
    test: Predictions  # prices of the test windows
    test_baselines: Baselines  # rw, ewma and drift on the same windows
    # per ticker x horizon (and ALL) interval scores of the test windows; [] for a point model
    test_interval_rows: list[dict[str, float | int | str]]


def evaluate_model(
    result: FitResult,
    windows: dict[str, WindowSet],
    prices_by_ticker: Mapping[str, pd.DataFrame],
    ahead: BaselinesAside | None = None,
) -> Evaluation:
    """Scores on the validation (promotion gate) and test (reported skill) splits, and the
    calibration behind a quantile model's intervals; `ahead`: baselines under way since the
    fit began (`baselines_ahead`), else a large test split's go to a worker process now."""
    metrics: dict[str, float] = {}
    made_now = baselines_aside(result.model, windows, prices_by_ticker)
    with nullcontext(ahead) if ahead else made_now as made:
        for split in EVALUATED:
            scores, predictions, base = score_split(
                result.model,
                windows[split],
                prices_by_ticker,
                split,
                made.of(split) if made else None,
            )
            metrics |= scores
    metrics |= {
        "best_epoch": result.best_epoch,
        "stopped_epoch": result.stopped_epoch,
        "train_windows_per_s": result.train_windows_per_s,
        **{f"{split}_windows": len(windows[split]) for split in SPLITS},
    }
    if result.calibration is not None:
        metrics |= result.calibration.metrics()
    return Evaluation(
        metrics, predictions, base, interval_rows(result.model, windows["test"], predictions, base)
    )


def evaluation_figures(
    result: FitResult,
    windows: dict[str, WindowSet],
    evaluation: Evaluation,
    by_ticker: list[dict[str, float | int | str]],
) -> dict[str, Figure]:
    """The run's PNGs by artifact name; fan charts and a reliability diagram with quantiles.
    Each draws a bounded, chosen set of tickers (from `by_ticker`, scores_by_ticker's rows):
    its size does not grow with the universe."""
    test = windows["test"]
    forecast, actual, last_close, quantiles = evaluation.test
    series = (test.tickers, test.ticker_ids, test.as_of, actual, forecast)
    mase = evaluation.metrics["test_mase"]
    shown = plots.forecast_tickers(
        {str(row["ticker"]): row for row in by_ticker}, limit=FORECAST_TICKERS
    )
    figures = {
        "plots/loss_curve.png": plots.loss_curve(result.history, result.best_epoch),
        "plots/actual_vs_forecast.png": plots.actual_vs_forecast(shown, *series, mase),
        f"plots/actual_vs_forecast_last{ZOOM_DAYS}.png": plots.actual_vs_forecast(
            shown, *series, mase, last_days=ZOOM_DAYS
        ),
        "plots/residuals.png": plots.residual_histogram(forecast, actual, last_close),
    }
    if quantiles is not None:
        levels = result.model.quantiles
        per_ticker = {
            str(r["ticker"]): {key: float(r[key]) for key in ("coverage_80", "crpss_rw", "windows")}
            for r in evaluation.test_interval_rows
            if r["horizon"] == 1 and r["ticker"] != "ALL"
        }
        chosen = plots.fan_tickers(per_ticker, limit=FAN_TICKERS)
        figures[f"plots/fan_chart_last{ZOOM_DAYS}.png"] = plots.fan_chart(
            chosen, *series[:4], quantiles, levels, last_days=ZOOM_DAYS
        )
        figures["plots/reliability.png"] = plots.reliability_diagram(
            levels, reliability_series(evaluation, levels)
        )
    return figures


def scores_by_ticker(test: WindowSet, evaluation: Evaluation) -> list[dict[str, float | int | str]]:
    """One row per ticker, every horizon pooled: windows, MAE beside the naive MAE and MASE; with
    intervals also the 80% / 95% coverage and the CRPS (bp) beside rw's, with the skill."""
    forecast, actual, last_close, _ = evaluation.test
    counts = np.bincount(test.ticker_ids, minlength=len(test.tickers))

    def mean_by_ticker(errors: np.ndarray) -> np.ndarray:  # [N, H] -> [T]
        sums = np.bincount(test.ticker_ids, weights=errors.mean(axis=1), minlength=len(counts))
        return np.divide(sums, counts, out=np.full(len(counts), np.nan), where=counts > 0)

    mae = mean_by_ticker(np.abs(forecast - actual)).tolist()
    naive = mean_by_ticker(np.abs(last_close[:, None] - actual)).tolist()
    rows: list[dict[str, float | int | str]] = [
        {"ticker": t, "windows": int(n), "mae": m, "naive_mae": nm, "mase": error_ratio(m, nm)}
        for t, n, m, nm in zip(test.tickers, counts.tolist(), mae, naive, strict=True)
    ]
    by_horizon: dict[str, list[dict[str, float | int | str]]] = {}
    for interval_row in evaluation.test_interval_rows:  # none for a point model
        by_horizon.setdefault(str(interval_row["ticker"]), []).append(interval_row)
    for row in rows:
        if mine := by_horizon.get(str(row["ticker"])):
            # every horizon has the same windows: the mean over horizons is the pooled figure
            pooled = {k: sum(float(r[k]) for r in mine) / len(mine) for k in INTERVAL_COLUMNS}
            row |= pooled | {"crpss_rw": 1 - error_ratio(pooled["crps"], pooled["rw_crps"])}
    return rows


def reliability_series(evaluation: Evaluation, levels: tuple[float, ...]) -> dict[str, np.ndarray]:
    """Observed share at or below each quantile: the model at h=1 and h=H, rw and ewma at h=1."""
    actual, quantiles = evaluation.test.actual, evaluation.test.quantiles
    assert quantiles is not None
    horizons = sorted({1, actual.shape[1]})
    series = {f"model h={h}": observed_levels(quantiles, actual)[h - 1] for h in horizons}
    base = evaluation.test_baselines
    for name in ("rw", "ewma"):
        series[f"{name} h=1"] = observed_levels(getattr(base, name), actual)[0]
    return series


def interval_rows(
    model: LSTMForecaster, test: WindowSet, predictions: Predictions, base: Baselines
) -> list[dict[str, float | int | str]]:
    """Per ticker and horizon (and ALL): coverage, CRPS and CRPS skill against rw and ewma;
    [] for a point model."""
    if predictions.quantiles is None:
        return []
    return interval_scores_by_ticker_horizon(
        predictions.quantiles,
        model.quantiles,
        predictions.actual,
        predictions.last_close,
        base,
        test.ticker_ids,
        test.tickers,
    )


def evaluation_texts(
    cfg: PipelineConfig,
    windows: dict[str, WindowSet],
    evaluation: Evaluation,
    by_ticker: list[dict[str, float | int | str]],
    data_tags: dict[str, str],
    run_id: str,
) -> dict[str, str]:
    """The run's text artifacts by name: config, scores per ticker x horizon and per ticker
    (`by_ticker`, scores_by_ticker's rows), model card."""
    test = windows["test"]
    forecast, actual, last_close, _ = evaluation.test
    rows = scores_by_ticker_horizon(forecast, actual, last_close, test.ticker_ids, test.tickers)
    if evaluation.test_interval_rows:
        rows = [row | more for row, more in zip(rows, evaluation.test_interval_rows, strict=True)]
    return {
        "config.yaml": report.config_yaml(cfg),
        "metrics/test_by_ticker_horizon.csv": report.table_csv(rows),
        "metrics/test_by_ticker.csv": report.table_csv(by_ticker),
        "model_card.md": report.model_card(cfg, data_tags, evaluation.metrics, run_id),
    }


class RunReport(NamedTuple):
    """What a run logs after training: final metrics, figures and text files by artifact name."""

    metrics: dict[str, float]
    figures: dict[str, Figure]
    texts: dict[str, str]

    @property
    def model_card(self) -> str:
        return self.texts["model_card.md"]


def run_report(
    cfg: PipelineConfig,
    result: FitResult,
    windows: dict[str, WindowSet],
    prices_by_ticker: Mapping[str, pd.DataFrame],
    data_tags: dict[str, str],
    run_id: str,
    ahead: BaselinesAside | None = None,
) -> RunReport:
    """Scores beside naive and the baselines (`ahead`: under way since the fit began), the
    run's figures, its config, metrics table, calibration and model card."""
    evaluation = evaluate_model(result, windows, prices_by_ticker, ahead)
    by_ticker = scores_by_ticker(windows["test"], evaluation)  # once: a table and the figures'
    texts = evaluation_texts(cfg, windows, evaluation, by_ticker, data_tags, run_id)
    if result.calibration is not None:
        texts["calibration.json"] = json.dumps(result.calibration.as_dict(), indent=1) + "\n"
    figures = evaluation_figures(result, windows, evaluation, by_ticker)
    return RunReport(evaluation.metrics, figures, texts)


def export_model(
    result: FitResult, windows: dict[str, WindowSet], path: Path, run_id: str, cutoff: str
) -> tuple[Path, np.ndarray]:
    """ONNX file with parity checked on real test windows, carrying the train split's input
    profile (drift.py); returns it and a batch-2 example."""
    test = windows["test"]
    sample = test.inputs(torch.arange(min(EXPORT_BATCH, len(test)))).cpu()
    metadata = {"run_id": run_id, "data_cutoff": cutoff}
    profile = drift.profile_of(train_rows(windows["train"]))
    if profile is not None:  # None: no ticker's train split holds a whole span
        metadata[drift.PROFILE_KEY] = json.dumps(profile, separators=(",", ":"))
    export_onnx(result.model, sample, path, metadata)
    return path, sample[:2].numpy()


def train_rows(train: WindowSet) -> dict[str, pd.DataFrame]:
    """Each ticker's rows of the train split (Close, Volume), exactly those its windows and
    their targets span: the segments build_window_sets cut, read back from the WindowSet."""
    horizon = train.targets.shape[1]
    ids, first, counts = np.unique(train.ticker_ids, return_index=True, return_counts=True)
    starts = train.starts.cpu().numpy()
    values = train.values.cpu().numpy()
    rows = {}
    for i, a, n in zip(ids.tolist(), starts[first].tolist(), counts.tolist(), strict=True):
        segment = values[a : a + n + train.window + horizon - 1]
        rows[train.tickers[i]] = pd.DataFrame(
            {"Close": segment[:, CLOSE], "Volume": segment[:, VOLUME]}
        )
    return rows
