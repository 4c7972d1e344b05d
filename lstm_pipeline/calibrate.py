"""Conformalised quantile regression (CQR) of a quantile model's intervals, per horizon.

Each pair of levels (tau, 1 - tau) is a central interval of nominal coverage 1 - 2 tau around
the median m. On calibration windows (after validation, before test: never trained on, never
used for early stopping) each window's score says how far its actual log return y lies out of
that interval, in units of the model's own half-width on that side:

    score = max((m - y) / (m - lower), (y - m) / (upper - m))

Normalised so, the calibrated interval m -/+ t x half-width keeps the model's width, which
follows volatility: wide in turbulent weeks, narrow in quiet ones. t is the conformal quantile
of the n scores, the ceil((n + 1)(1 - 2 tau))-th smallest; on windows exchangeable with the
calibration windows the interval then covers at least 1 - 2 tau (the finite-sample guarantee).
A scale is never below the scale of a pair inside it, so calibrated quantiles cannot cross.
The scales become the model's `calibration` buffer: the ONNX file carries them.
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
    scales: np.ndarray  # [H, Q] multiplier of each level's distance from the median
    levels: tuple[float, ...]
    windows: int  # calibration windows behind the scales

    def metrics(self) -> dict[str, float]:
        """The scales of the 80% and 95% intervals per horizon, and the windows behind them."""
        out: dict[str, float] = {"calib_windows": float(self.windows)}
        for coverage in (80, 95):
            j = _lower_index(self.levels, coverage / 100)
            for k, scale in enumerate(self.scales[:, j], start=1):
                out[f"calib_scale_{coverage}_h{k}"] = float(scale)
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "method": "CQR, scores normalised by the model's half-widths, per horizon",
            "windows": self.windows,
            "levels": list(self.levels),
            "scales_by_horizon": self.scales.round(6).tolist(),
        }


def _lower_index(levels: tuple[float, ...], coverage: float) -> int:
    return min(range(len(levels)), key=lambda j: abs(levels[j] - (1 - coverage) / 2))


def conformal_scales(
    quantiles: np.ndarray, actual: np.ndarray, levels: tuple[float, ...]
) -> np.ndarray:
    """Scales [H, Q] from uncalibrated log-return quantiles [N, H, Q] and actuals [N, H]."""
    n, horizons, q = quantiles.shape
    mid = q // 2
    median = quantiles[..., mid]
    scales = np.ones((horizons, q))
    tiny = np.finfo(np.float64).tiny
    for j in range(mid - 1, -1, -1):  # from the innermost pair outwards
        below = np.maximum(median - quantiles[..., j], tiny)
        above = np.maximum(quantiles[..., q - 1 - j] - median, tiny)
        score = np.maximum((median - actual) / below, (actual - median) / above)  # [N, H]
        t = _conformal_quantile(score, levels[q - 1 - j] - levels[j])
        inner = scales[:, j + 1] if j + 1 < mid else np.zeros(horizons)
        scales[:, j] = scales[:, q - 1 - j] = np.maximum(t, inner)
    return scales


def _conformal_quantile(score: np.ndarray, coverage: float) -> np.ndarray:
    """The ceil((n + 1) coverage)-th smallest score per column; with too few windows for that
    rank, the largest (the guarantee then needs more windows, said in the log)."""
    n = score.shape[0]
    rank = math.ceil((n + 1) * coverage - 1e-9)
    if rank > n:
        log.warning(
            "%d calibration windows are too few for a %.1f%% guarantee (needs %d)",
            n,
            100 * coverage,
            math.ceil(coverage / (1 - coverage)),
        )
        rank = n
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
