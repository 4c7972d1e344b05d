"""The promotion gate, as plain functions: same windows for both models, then one rule.

Both the new model and the current champion are scored through their ONNX files on the new
run's validation windows, so neither is judged on data the other never faced. The rule:

    promote  iff  new_mase <= 1 - margin                      (beats naive by the margin)
             and  new_mase <= (1 - margin) * champion_mase    (beats the champion by it)

MASE is the model's MAE over the naive forecast's MAE on the same windows and horizons, so the
margin is a relative improvement: 0.02 demands an MAE 2% below naive's and 2% below the
champion's. Margin 0 (the default) promotes a model no worse than both.

A model with intervals must also keep them honest on the validation windows, on which they were
not calibrated (the calibration split lies after them): its 80% interval covers between
COVERAGE_80_BAND of the actual prices, and its CRPS is no worse than the random walk's with the
ticker's empirical return quantiles (CRPS skill against `rw` >= 0).

A gate that cannot compare says so and does not promote: a champion that cannot be scored on
these windows (other features, a file that does not load or fails to run, a window longer than
any validation segment of this run, a non-finite score) blocks automatic promotion, and the new
model becomes challenger: a person decides (`promote`). A new model with no validation windows
is not promoted either. No model is ever run on zero windows. No MLflow and no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lstm_pipeline.errors import InputError, one_line
from lstm_pipeline.evaluate import score_forecasts
from lstm_pipeline.predict import OnnxForecaster

if TYPE_CHECKING:
    from lstm_pipeline.features import WindowSet


@dataclass(frozen=True)
class GateWindows:
    """Raw validation windows and what they are scored against."""

    windows: np.ndarray  # [N, L, F] float32 raw features, L >= every model's window
    actual: np.ndarray  # [N, H] prices the windows' targets
    last_close: np.ndarray  # [N] prices, the naive forecast


def gate_windows(val: WindowSet, length: int) -> GateWindows:
    """Windows of `length` days ending on the same days as `val`'s own windows.

    For `length` > val.window only the windows with that much history inside their ticker's
    segment remain, so a longer-window model and this run's model face identical targets.
    """
    extra = max(length, val.window) - val.window
    starts = val.starts.cpu().numpy()
    first, _ = _start_range(starts, val.ticker_ids)
    keep = starts - extra >= first[val.ticker_ids]  # the longer window stays inside its segment
    values = val.values.cpu().numpy()
    rows = (starts[keep] - extra)[:, None] + np.arange(val.window + extra)  # [N, L]
    last_close = val.last_close().double().cpu().numpy()[keep]
    actual = last_close[:, None] * np.exp(val.targets.double().cpu().numpy()[keep])
    return GateWindows(values[rows].astype(np.float32, copy=False), actual, last_close)


def longest_history(val: WindowSet) -> int:
    """Days of input the longest ticker segment of `val` can give its last window (0: none)."""
    if len(val) == 0:
        return 0
    first, last = _start_range(val.starts.cpu().numpy(), val.ticker_ids)
    held = first <= last  # tickers with windows here
    return int((last[held] - first[held]).max()) + val.window


def _start_range(starts: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each ticker's first and last window start, by ticker id (first > last: no windows);
    one pass over the windows, not one per ticker."""
    tickers = int(ids.max()) + 1 if len(ids) else 0
    first = np.full(tickers, np.iinfo(np.int64).max)
    last = np.full(tickers, np.iinfo(np.int64).min)
    np.minimum.at(first, ids, starts)
    np.maximum.at(last, ids, starts)
    return first, last


def validation_mase(model: OnnxForecaster, data: GateWindows, horizons: int) -> float:
    """MASE over horizons 1..`horizons`, each model fed the trailing part of the windows."""
    if len(data.actual) == 0:  # onnxruntime aborts the process on an empty batch
        raise ValueError("no windows to score a model on")
    forecast = model.predict(data.windows[:, -model.window :])[:, :horizons]
    return score_forecasts(
        forecast.astype(np.float64), data.actual[:, :horizons], data.last_close, prefix="val"
    )["val_mase"]


@dataclass(frozen=True)
class GateScores:
    new_mase: float
    champion_mase: float | None  # None: no champion, or one that cannot be scored here
    champion_version: str | None
    windows: int
    horizons: int
    note: str = ""  # why a champion could not be scored

    @property
    def compared(self) -> bool:
        """Whether both models were scored: False when there was nothing to compare with."""
        return self.champion_mase is not None


def score_both(new_model: Path, champion: tuple[str, Path] | None, val: WindowSet) -> GateScores:
    """Validation MASE of the new model and of the champion (version, ONNX file), alike.

    Never fails on the champion: one that cannot face these windows comes back unscored, with
    the reason in `note`. With no validation windows at all, neither model is run.
    """
    new = OnnxForecaster(new_model)
    version = champion[0] if champion is not None else None
    old, note = (None, "") if champion is None else _loadable_champion(*champion, val)
    data = gate_windows(val, max(val.window, old.window if old is not None else 0))
    horizons = min(new.horizon, old.horizon) if old is not None else new.horizon
    if len(data.actual) == 0:
        return GateScores(float("nan"), None, version, 0, horizons, note or "no windows")
    new_mase = validation_mase(new, data, horizons)
    old_mase = None
    if old is not None:
        old_mase, note = _champion_mase(old, data, horizons)
    return GateScores(new_mase, old_mase, version, len(data.actual), horizons, note)


def _loadable_champion(
    version: str, path: Path, val: WindowSet
) -> tuple[OnnxForecaster | None, str]:
    """The champion's session, or None and why it cannot face these windows (naming it by its
    version: its file is a download that is gone once the run ends)."""
    try:
        old = OnnxForecaster(path, name=f"champion v{version}")
    except InputError as exc:  # other features or their order among them: OnnxForecaster checks
        return None, str(exc)
    history = longest_history(val)
    if len(val) and old.window > history:
        return None, (
            f"its window of {old.window} days is longer than the {history} days of the "
            "longest validation segment here"
        )
    return old, ""


def _champion_mase(
    old: OnnxForecaster, data: GateWindows, horizons: int
) -> tuple[float | None, str]:
    """The champion's MASE, or None and why: a graph that fails to run, or a non-finite score."""
    try:
        mase = validation_mase(old, data, horizons)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        return None, f"it fails to run ({one_line(exc)})"
    if not np.isfinite(mase):
        return None, f"its validation MASE is {mase}"
    return mase, ""


COVERAGE_80_BAND = (0.75, 0.85)  # the 80% interval's coverage a promoted model keeps


@dataclass(frozen=True)
class IntervalScores:
    """How honest a candidate's intervals are on the validation windows."""

    coverage_80: float  # share of actual prices inside the 80% interval
    crpss_rw: float  # 1 - CRPS / CRPS of the rw baseline on the same windows

    @classmethod
    def from_metrics(cls, metrics: dict[str, float]) -> IntervalScores | None:
        """From a run's `val_*` metrics; None for a point model (no intervals)."""
        if "val_coverage_80" not in metrics:
            return None
        return cls(metrics["val_coverage_80"], metrics["val_crpss_rw"])

    def problems(self) -> list[str]:
        low, high = COVERAGE_80_BAND
        whys = []
        if not low <= self.coverage_80 <= high:
            whys.append(
                f"its 80% interval covers {self.coverage_80:.1%} of validation prices "
                f"(needs {low:.0%}..{high:.0%})"
            )
        if not self.crpss_rw >= 0:
            whys.append(
                f"its validation CRPS loses to the random walk's (CRPS skill {self.crpss_rw:+.1%})"
            )
        return whys


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    scores: GateScores
    margin: float
    intervals: IntervalScores | None = None


def decide(
    scores: GateScores, margin: float, intervals: IntervalScores | None = None
) -> GateDecision:
    """Apply the rule in this module's docstring; the reason quotes both scores, says when
    the champion could not be compared, and why the new model's intervals fail, if they do."""
    new, old, version = scores.new_mase, scores.champion_mase, scores.champion_version
    bar = 1 - margin
    where = f"on {scores.windows} validation windows, horizons 1..{scores.horizons}"
    whys = []
    if scores.windows == 0:
        whys.append("there are no validation windows to score it on")
    elif not new <= bar:
        whys.append(
            f"validation MASE {new:.4f} does not beat the naive forecast (needs <= {bar:.4f})"
        )
    if version is not None and old is None:
        whys.append(f"champion v{version} cannot be scored on these windows ({scores.note})")
    elif old is not None and not new <= bar * old:
        whys.append(
            f"validation MASE {new:.4f} is worse than champion v{version}'s {old:.4f} "
            f"(needs <= {bar * old:.4f})"
        )
    if intervals is not None:
        whys.extend(intervals.problems())
    if whys:
        reason = f"not promoted: {'; '.join(whys)}; {where}"
        return GateDecision(False, reason, scores, margin, intervals)
    against = f"champion v{version}'s {old:.4f}" if old is not None else "no previous champion"
    reason = f"promoted: validation MASE {new:.4f} <= {bar:.4f} (naive); {against}; {where}"
    if intervals is not None:
        reason += (
            f"; 80% interval covers {intervals.coverage_80:.1%}, CRPS skill vs rw "
            f"{intervals.crpss_rw:+.1%}"
        )
    return GateDecision(True, reason, scores, margin, intervals)
