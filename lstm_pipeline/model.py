"""The forecaster: an LSTM over window-normalised features with a linear multi-horizon head.

A point model's head gives one log return per horizon. A quantile model's head gives, per
horizon, the median and positive gaps to the neighbouring levels (softplus), summed outward
from the median: the quantiles cannot cross, whatever the input, by construction. A calibration
buffer (fitted after training, calibrate.py) then scales each gap by a positive factor, which
keeps that construction.
"""

from __future__ import annotations

import torch
from torch import nn

from lstm_pipeline.features import CLOSE, N_DERIVED, derived_features, normalise_windows

# The head predicts log returns in percent-sized units, so its outputs start near the
# targets' scale (daily log returns are ~0.01) instead of 10-100x larger.
RETURN_SCALE = 0.01


class LSTMForecaster(nn.Module):
    """Raw windows [B, W, F] -> log returns of close for horizons 1..H: [B, H] for a point
    model, [B, H, Q] quantiles for levels `quantiles` (increasing, symmetric about 0.5).

    `cell="gru"` swaps the LSTM for a GRU; `derived_features` appends return/range/body channels.
    """

    calibration: torch.Tensor  # [H, Q] buffer of a quantile model, see __init__

    def __init__(
        self,
        n_features: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        cell: str = "lstm",
        derived_features: bool = False,
        quantiles: tuple[float, ...] = (),
    ) -> None:
        super().__init__()
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.derived_features = derived_features
        self.horizon = horizon
        self.quantiles = tuple(quantiles)
        self.rnn = recurrent(
            n_features + (N_DERIVED if derived_features else 0),
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # torch warns on dropout with 1 layer
        )
        self.head = nn.Linear(hidden_size, horizon * max(len(self.quantiles), 1))
        if self.quantiles:
            # conformal scale (> 0) of each level's gap to its inner neighbour, per horizon (the
            # median's is unused): 1 until calibrate.fit_calibration sets it; saved with the
            # weights and traced into ONNX
            self.register_buffer("calibration", torch.ones(horizon, len(self.quantiles)))

    @property
    def median_index(self) -> int:
        """Position of the 0.5 level among the quantiles (the point forecast)."""
        return len(self.quantiles) // 2

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        z = normalise_windows(window)  # [B, W, F]
        if self.derived_features:
            z = torch.cat([z, derived_features(window)], dim=-1)
        out, _ = self.rnn(z)  # [B, W, hidden]
        raw = self.head(out[:, -1]).float()  # [B, H * Q]; float32 under autocast
        if not self.quantiles:
            return raw * RETURN_SCALE  # [B, H]
        raw = raw.view(-1, self.horizon, len(self.quantiles))
        return self._quantiles(raw, window_volatility(window))

    def _quantiles(self, raw: torch.Tensor, volatility: torch.Tensor) -> torch.Tensor:
        """[B, H, Q] raw head outputs -> non-crossing, calibrated log-return quantiles; the
        gaps are in units of the window's own volatility [B, 1, 1]."""
        mid = self.median_index
        median = raw[..., mid : mid + 1]  # [B, H, 1]
        scale = self.calibration * volatility  # [B, H, Q]
        up = nn.functional.softplus(raw[..., mid + 1 :]) * scale[..., mid + 1 :]  # gaps outward
        down = nn.functional.softplus(raw[..., :mid]) * scale[..., :mid]  # the farthest first
        # distance of each lower level below the median: the sum of its gap and those inside
        # it (a reversed cumsum, written without flip so every exporter takes it)
        below = down.sum(-1, keepdim=True) - down.cumsum(-1) + down
        distance = torch.cat([-below, torch.zeros_like(median), up.cumsum(-1)], dim=-1)
        return (median + distance) * RETURN_SCALE  # [B, H, Q]


EWMA_DECAY = 0.94  # RiskMetrics' daily decay: the window's recent days weigh most


def window_volatility(window: torch.Tensor) -> torch.Tensor:
    """EWMA volatility [B, 1, 1] of each raw window's daily log returns of close, in percent.

    The quantile gaps are measured in it, so intervals widen with the volatility the window
    shows and one global model fits calm and turbulent tickers alike (traced into ONNX).
    """
    log_close = torch.log(window[..., CLOSE])  # [B, W]
    steps = (log_close[:, 1:] - log_close[:, :-1]) / RETURN_SCALE  # [B, W - 1]
    ages = torch.arange(steps.shape[1] - 1, -1, -1, dtype=steps.dtype, device=steps.device)
    weights = EWMA_DECAY**ages
    variance = (steps**2 * (weights / weights.sum())).sum(-1)  # [B]
    # a floor of 0.01%: a flat window (no trades) still gets intervals of some width
    return torch.sqrt(variance + 1e-4)[:, None, None]


class PriceForecaster(nn.Module):
    """What ships as ONNX: raw windows [B, W, F] in, prices out, nothing else needed.

    A point model gives `forecast` [B, H]; a quantile model also its `quantiles` [B, H, Q] prices,
    of which `forecast` is the median.
    """

    def __init__(self, net: LSTMForecaster) -> None:
        super().__init__()
        self.net = net

    def forward(self, window: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        last_close = window[:, -1, CLOSE : CLOSE + 1]  # [B, 1]
        out = self.net(window)
        if not self.net.quantiles:
            return last_close * torch.exp(out)
        prices = last_close[:, :, None] * torch.exp(out)  # [B, H, Q]
        return prices[..., self.net.median_index], prices
