"""Conformalised quantile regression (CQR) of a quantile model's intervals, per horizon.

Each pair of levels (tau, 1 - tau) is a central interval of nominal coverage 1 - 2 tau around
the median m. The pairs are calibrated from the innermost outwards; each widens the calibrated
interval inside it [lo, hi] (for the innermost, [m, m]) by t times the model's own gaps to the
pair's levels (g_lo below, g_hi above). On calibration windows (after validation, before test:
never trained on, never used for early stopping) each window's score is the t that puts its
actual log return y on that interval's edge:

    score = max((lo - y) / g_lo, (y - hi) / g_hi)

Normalised so, the calibrated interval keeps the model's width, which follows volatility: wide
in turbulent weeks, narrow in quiet ones. t is the conformal quantile of the n scores, the
ceil((n + 1)(1 - 2 tau))-th smallest; on windows exchangeable with the calibration windows the
interval then covers at least 1 - 2 tau and, scores being continuous, at most 1 - 2 tau +
1 / (n + 1) (the finite-sample guarantee), for every pair at once. Scaling gaps, not distances
from the median, keeps non-crossing without tying a pair's scale to the pair inside it, which
would over-cover. The scales become the model's `calibration` buffer: the ONNX file carries them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from lstm_pipeline.features import WindowSet
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.train import predict_log_returns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    scales: np.ndarray  # [H, Q] multiplier of each level's gap to its inner neighbour
    levels: tuple[float, ...]
    windows: int  # calibration windows behind the scales

    def metrics(self) -> dict[str, float]:
        """The gap scales of the 80% and 95% intervals' bounds per horizon, and the windows behind
        them."""
        out: dict[str, float] = {"calib_windows": float(self.windows)}
        for coverage in (80, 95):
            j = _lower_index(self.levels, coverage / 100)
            for k, scale in enumerate(self.scales[:, j], start=1):
                out[f"calib_scale_{coverage}_h{k}"] = float(scale)
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "method": "CQR, scores normalised by the model's quantile gaps, per horizon",
            "windows": self.windows,
            "levels": list(self.levels),
            "scales_by_horizon": self.scales.round(6).tolist(),
        }


def _lower_index(levels: tuple[float, ...], coverage: float) -> int:
    return min(range(len(levels)), key=lambda j: abs(levels[j] - (1 - coverage) / 2))


# the least gap scale: it binds only when the interval inside a pair already covers the pair's
# share; the gap then stays visible, so calibrated quantiles still increase strictly
MIN_GAP_SCALE = 0.05


def conformal_scales(
    quantiles: np.ndarray, actual: np.ndarray, levels: tuple[float, ...]
) -> np.ndarray:
    """Gap scales [H, Q] from uncalibrated log-return quantiles [N, H, Q] and actuals [N, H]
    (the median's scale is 1 and unused)."""
    _, horizons, q = quantiles.shape
    mid = q // 2
    scales = np.ones((horizons, q))
    tiny = np.finfo(np.float64).tiny
    lo = hi = quantiles[..., mid]  # the calibrated interval inside the pair: none yet
    for j in range(mid - 1, -1, -1):  # from the innermost pair outwards
        gap_lo = np.maximum(quantiles[..., j + 1] - quantiles[..., j], tiny)
        gap_hi = np.maximum(quantiles[..., q - 1 - j] - quantiles[..., q - 2 - j], tiny)
        # a gap that underflowed makes a score overflow to inf: a window beyond any scale,
        # which the conformal rank handles; a model that broke so is refused after training
        with np.errstate(over="ignore"):
            score = np.maximum((lo - actual) / gap_lo, (actual - hi) / gap_hi)  # [N, H]
        t = np.maximum(_conformal_quantile(score, levels[q - 1 - j] - levels[j]), MIN_GAP_SCALE)
        scales[:, j] = scales[:, q - 1 - j] = t
        lo, hi = lo - t * gap_lo, hi + t * gap_hi
    return scales


def _conformal_quantile(score: np.ndarray, coverage: float) -> np.ndarray:
    """The ceil((n + 1) coverage)-th smallest score per column. With too few windows for that
    rank there is no guarantee to give (said in the log): the largest score, but never below
    1, so such an interval is never narrower than the model's own."""
    n = score.shape[0]
    rank = math.ceil((n + 1) * coverage - 1e-9)
    if rank > n:
        log.warning(
            "%d calibration windows are too few for a %.1f%% guarantee (needs %d); the model's "
            "own interval is kept or widened",
            n,
            100 * coverage,
            math.ceil(coverage / (1 - coverage)),
        )
        return np.maximum(np.sort(score, axis=0)[-1], 1.0)
    return np.sort(score, axis=0)[rank - 1]


@torch.no_grad()
def fit_calibration(net: LSTMForecaster, calib: WindowSet) -> Calibration:
    """Set `net`'s calibration buffer from the `calib` windows; returns what was fitted."""
    net.calibration.fill_(1.0)
    quantiles = predict_log_returns(net, calib.to(net.calibration.device)).double().cpu().numpy()
    scales = conformal_scales(quantiles, calib.targets.double().cpu().numpy(), net.quantiles)
    net.calibration.copy_(torch.as_tensor(scales, dtype=net.calibration.dtype))
    result = Calibration(scales, net.quantiles, len(calib))
    log.info(
        "calibrated on %d windows: 80%% scale %s, 95%% scale %s (by horizon)",
        len(calib),
        np.round(scales[:, _lower_index(net.quantiles, 0.8)], 3).tolist(),
        np.round(scales[:, _lower_index(net.quantiles, 0.95)], 3).tolist(),
    )
    return result
