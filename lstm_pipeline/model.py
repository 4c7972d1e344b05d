"""The forecaster: an LSTM over window-normalised features with a linear multi-horizon head."""

from __future__ import annotations

import torch
from torch import nn

from lstm_pipeline.features import CLOSE, N_DERIVED, derived_features, normalise_windows

# The head predicts log returns in percent-sized units, so its outputs start near the
# targets' scale (daily log returns are ~0.01) instead of 10-100x larger.
RETURN_SCALE = 0.01


class LSTMForecaster(nn.Module):
    """Raw windows [B, W, F] -> log returns of close [B, H] for horizons 1..H.

    `cell="gru"` swaps the LSTM for a GRU; `derived_features` appends return/range/body channels.
    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        cell: str = "lstm",
        derived_features: bool = False,
    ) -> None:
        super().__init__()
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.derived_features = derived_features
        self.rnn = recurrent(
            n_features + (N_DERIVED if derived_features else 0),
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # torch warns on dropout with 1 layer
        )
        self.head = nn.Linear(hidden_size, horizon)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        z = normalise_windows(window)  # [B, W, F]
        if self.derived_features:
            z = torch.cat([z, derived_features(window)], dim=-1)
        out, _ = self.rnn(z)  # [B, W, hidden]
        return self.head(out[:, -1]).float() * RETURN_SCALE  # [B, H]; float32 under autocast


class PriceForecaster(nn.Module):
    """What ships as ONNX: raw windows [B, W, F] in, prices [B, H] out, nothing else needed."""

    def __init__(self, net: LSTMForecaster) -> None:
        super().__init__()
        self.net = net

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        last_close = window[:, -1, CLOSE : CLOSE + 1]  # [B, 1]
        return last_close * torch.exp(self.net(window))
