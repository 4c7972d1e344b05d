"""The promotion gate, as plain functions: same windows for both models, then one rule.

Both the new model and the current champion are scored through their ONNX files on the new
run's validation windows, so neither is judged on data the other never faced. The rule:

    promote  iff  new_mase <= 1 - margin                      (beats naive by the margin)
             and  new_mase <= (1 - margin) * champion_mase    (beats the champion by it)

MASE is the model's MAE over the naive forecast's MAE on the same windows and horizons, so the
margin is a relative improvement: 0.02 demands an MAE 2% below naive's and 2% below the
champion's. Margin 0 (the default) promotes a model no worse than both. A champion that cannot
be scored on these windows (other features) blocks automatic promotion: a person decides.
No MLflow and no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lstm_pipeline.errors import InputError
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
    ids = val.ticker_ids
    first_of_ticker = {i: starts[ids == i].min() for i in np.unique(ids)}
    segment_start = np.array([first_of_ticker[i] for i in ids])
    keep = starts - extra >= segment_start  # the longer window stays inside its segment
    values = val.values.cpu().numpy()
    rows = (starts[keep] - extra)[:, None] + np.arange(val.window + extra)  # [N, L]
    last_close = val.last_close().double().cpu().numpy()[keep]
    actual = last_close[:, None] * np.exp(val.targets.double().cpu().numpy()[keep])
    return GateWindows(values[rows].astype(np.float32), actual, last_close)


def gate_length(val: WindowSet, champion: OnnxForecaster | None) -> int:
    """The window length both models can be given: the longer of the two."""
    return max(val.window, champion.window if champion is not None else 0)


def validation_mase(model: OnnxForecaster, data: GateWindows, horizons: int) -> float:
    """MASE over horizons 1..`horizons`, each model fed the trailing part of the windows."""
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


def score_both(new_model: Path, champion: tuple[str, Path] | None, val: WindowSet) -> GateScores:
    """Validation MASE of the new model and of the champion (version, ONNX file), alike."""
    new = OnnxForecaster(new_model)
    version, old, note = None, None, ""
    if champion is not None:
        version = champion[0]
        old, note = _loadable_champion(champion[1], new)
    data = gate_windows(val, gate_length(val, old))
    horizons = min(new.horizon, old.horizon) if old else new.horizon  # the shared horizons
    return GateScores(
        validation_mase(new, data, horizons),
        validation_mase(old, data, horizons) if old else None,
        version,
        len(data.actual),
        horizons,
        note,
    )


def _loadable_champion(path: Path, new: OnnxForecaster) -> tuple[OnnxForecaster | None, str]:
    """The champion's session, or None and why it cannot face the new model's windows."""
    try:
        old = OnnxForecaster(path)
    except InputError as exc:
        return None, str(exc)
    if old.features != new.features:
        return None, f"it takes features {','.join(old.features)}, not {','.join(new.features)}"
    return old, ""


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    scores: GateScores
    margin: float


def decide(scores: GateScores, margin: float) -> GateDecision:
    """Apply the rule in this module's docstring; the reason quotes both scores."""
    new, old, version = scores.new_mase, scores.champion_mase, scores.champion_version
    bar = 1 - margin
    where = f"on {scores.windows} validation windows, horizons 1..{scores.horizons}"
    if not new <= bar:
        why = f"validation MASE {new:.4f} does not beat the naive forecast (needs <= {bar:.4f})"
    elif version is not None and old is None:
        why = f"champion v{version} cannot be scored on these windows ({scores.note})"
    elif old is not None and not new <= bar * old:
        why = (
            f"validation MASE {new:.4f} is worse than champion v{version}'s {old:.4f} "
            f"(needs <= {bar * old:.4f})"
        )
    else:
        against = f"champion v{version}'s {old:.4f}" if old is not None else "no previous champion"
        reason = f"promoted: validation MASE {new:.4f} <= {bar:.4f} (naive); {against}; {where}"
        return GateDecision(True, reason, scores, margin)
    return GateDecision(False, f"not promoted: {why}; {where}", scores, margin)
