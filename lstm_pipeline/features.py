"""Chronological splits, window-relative normalisation and `unfold` window views.

Normalisation needs no fitted state: prices become log ratios to the window's last close and
volume a log ratio to the window's mean volume. It cannot leak the future, serves every ticker
with one model, and lives inside the ONNX graph (see model.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.data import FEATURES, PRICE_COLUMNS, require_rows
from lstm_pipeline.splits import (  # re-exported: the splits' arithmetic lives there, torch-free
    SPLITS,
    held_out_rows,
    min_split_rows,
    rows_needed,
    split_purpose,
)

OPEN, HIGH, LOW, CLOSE = (FEATURES.index(c) for c in PRICE_COLUMNS)
VOLUME = FEATURES.index("Volume")
N_PRICES = len(PRICE_COLUMNS)


def split_by_time(prices: pd.DataFrame, cfg: FeatureConfig, ticker: str) -> dict[str, pd.DataFrame]:
    """Cut one ticker's rows, oldest first, into train / val / calib / test by the configured
    fractions.

    Each part holds at least MIN_WINDOWS_PER_SPLIT windows with their horizons, since windows
    never cross a split.
    """
    held_out = held_out_rows(len(prices), cfg)
    needed = max(rows_needed(cfg), sum(held_out) + min_split_rows(cfg))
    require_rows(prices, ticker, needed, split_purpose(cfg))
    n_train = len(prices) - sum(held_out)
    cuts = np.cumsum([0, n_train, *held_out])
    return {name: prices.iloc[a:b] for name, a, b in zip(SPLITS, cuts[:-1], cuts[1:], strict=True)}


def make_windows(
    series: torch.Tensor, window: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All complete (input, target) pairs of one contiguous series.

    Args:
        series: [T, F] raw features in FEATURES order.
    Returns:
        x: [N, W, F] zero-copy view of `series`, N = T - W - H + 1.
        y: [N, H] log(close[t + h] / close[t]) for h = 1..H, t = the window's last day.
    """
    n = series.shape[0] - window - horizon + 1
    if n < 1:
        raise ValueError(f"series of {series.shape[0]} rows is too short for {window}+{horizon}")
    x = series.unfold(0, window, 1).transpose(1, 2)[:n]  # [N, W, F] view
    log_close = series[:, CLOSE].double().log()
    future = log_close.unfold(0, horizon + 1, 1)[window - 1 : window - 1 + n]  # [N, H + 1]
    y = (future[:, 1:] - future[:, :1]).float()  # [N, H]
    return x, y


@dataclass(frozen=True)
class WindowSet:
    """Every window of one split across tickers, drawn by index from one (device) tensor.

    Segments (one per ticker) are concatenated in `values`; `starts` lists the first row of each
    window, chosen so no window or target crosses a segment. Memory is O(rows), not O(rows x W).
    """

    values: torch.Tensor  # [T, F] raw features of every ticker's segment, concatenated
    starts: torch.Tensor  # [N] int64 first row of each window in `values`
    targets: torch.Tensor  # [N, H] log returns of close, see make_windows
    window: int
    tickers: tuple[str, ...]  # names behind ticker_ids
    ticker_ids: np.ndarray  # [N] index into `tickers` of each window
    as_of: np.ndarray  # [N] datetime64 date of each window's last day

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """Raw windows [B, W, F] for window indices `idx` (a gather from the unfold view)."""
        views = self.values.unfold(0, self.window, 1).transpose(1, 2)  # [T - W + 1, W, F]
        return views[self.starts[idx]]

    def last_close(self) -> torch.Tensor:
        """[N] close on each window's last day, the naive forecast and the price anchor."""
        return self.values[self.starts + self.window - 1, CLOSE]

    def to(self, device: torch.device) -> WindowSet:
        """A copy on `device`; to CUDA through pinned memory, so the copy runs asynchronously."""
        cuda = device.type == "cuda"

        def move(t: torch.Tensor) -> torch.Tensor:
            return (t.pin_memory() if cuda and not t.is_cuda else t).to(device, non_blocking=cuda)

        return WindowSet(
            move(self.values),
            move(self.starts),
            move(self.targets),
            self.window,
            self.tickers,
            self.ticker_ids,
            self.as_of,
        )


Splitter = Callable[[pd.DataFrame, FeatureConfig, str], dict[str, pd.DataFrame]]


def build_window_sets(
    prices_by_ticker: dict[str, pd.DataFrame],
    cfg: FeatureConfig,
    splitter: Splitter = split_by_time,
) -> dict[str, WindowSet]:
    """Split every ticker by time, window each split separately, pool the tickers per split.

    `splitter` maps one ticker's frame to one frame per name in SPLITS (backtests pass their
    fold's cut); windows never cross the frames it returns.
    """
    tickers = tuple(prices_by_ticker)
    parts: dict[str, list[tuple[int, pd.DataFrame]]] = {s: [] for s in SPLITS}
    for i, (ticker, prices) in enumerate(prices_by_ticker.items()):
        for name, frame in splitter(prices, cfg, ticker).items():
            parts[name].append((i, frame))
    return {name: _pool(parts[name], tickers, cfg) for name in SPLITS}


def _pool(
    segments: list[tuple[int, pd.DataFrame]], tickers: tuple[str, ...], cfg: FeatureConfig
) -> WindowSet:
    """One WindowSet of every segment's windows (make_windows' targets), in segment order,
    built from the concatenated segments at once rather than segment by segment."""
    window, horizon = cfg.window, cfg.horizon
    lengths = np.array([len(frame) for _, frame in segments], dtype=np.int64)
    counts = lengths - window - horizon + 1
    if (counts < 1).any():
        rows = int(lengths[np.argmax(counts < 1)])
        raise ValueError(f"series of {rows} rows is too short for {window}+{horizon}")
    raw = np.concatenate([_raw_features(frame) for _, frame in segments])
    values = torch.from_numpy(np.ascontiguousarray(raw))  # pandas gives column-major
    first_window = np.repeat(np.cumsum(counts) - counts, counts)  # of each window's segment
    starts = (
        np.repeat(np.cumsum(lengths) - lengths, counts) + np.arange(counts.sum()) - first_window
    )
    last_day = starts + window - 1
    log_close = values[:, CLOSE].double().log()
    future = log_close[torch.from_numpy(last_day[:, None] + np.arange(horizon + 1))]  # [N, H + 1]
    dates = np.concatenate([frame.index.to_numpy() for _, frame in segments])
    return WindowSet(
        values,
        torch.from_numpy(starts),
        (future[:, 1:] - future[:, :1]).float(),
        window,
        tickers,
        np.repeat(np.array([i for i, _ in segments], dtype=np.int64), counts),
        dates[last_day],
    )


def _raw_features(frame: pd.DataFrame) -> np.ndarray:
    """[T, F] float32 FEATURES of `frame`, a new array (selecting columns that are already
    FEATURES costs a pandas copy per segment: 2,000 of them at 500 tickers)."""
    same = list(frame.columns) == list(FEATURES)
    return (frame if same else frame.loc[:, list(FEATURES)]).to_numpy(np.float32, copy=True)


def normalise_windows(x: torch.Tensor) -> torch.Tensor:
    """Raw windows [B, W, F] -> window-relative features [B, W, F] (traced into the ONNX graph).

    Prices: log(p / last close). Volume: log((v + 1) / (mean v + 1)); +1 keeps zero volume finite.
    """
    last_close = x[:, -1:, CLOSE : CLOSE + 1]  # [B, 1, 1]
    prices = torch.log(x[..., :N_PRICES] / last_close)
    volume = x[..., VOLUME : VOLUME + 1]
    mean_volume = volume.mean(dim=1, keepdim=True)  # [B, 1, 1]
    return torch.cat([prices, torch.log((volume + 1) / (mean_volume + 1))], dim=-1)


N_DERIVED = 3  # channels added by derived_features


def derived_features(x: torch.Tensor) -> torch.Tensor:
    """Extra channels [B, W, 3] from raw windows [B, W, F], in percent (log) units.

    Daily close-to-close return (0 on the first day), high-low range, open-to-close body.
    Computed in torch so they are traced into the ONNX graph: the input contract is unchanged.
    """
    log_close = torch.log(x[..., CLOSE])  # [B, W]
    steps = log_close[:, 1:] - log_close[:, :-1]  # slices, not diff: ONNX has no diff op
    daily = torch.cat([torch.zeros_like(log_close[:, :1]), steps], dim=1)
    high_low = torch.log(x[..., HIGH] / x[..., LOW])
    body = log_close - torch.log(x[..., OPEN])
    return torch.stack([daily, high_low, body], dim=-1) * 100


def denormalise_windows(
    z: torch.Tensor, last_close: torch.Tensor, mean_volume: torch.Tensor
) -> torch.Tensor:
    """Inverse of normalise_windows given each window's last close and mean volume, both [B]."""
    prices = torch.exp(z[..., :N_PRICES]) * last_close[:, None, None]
    volume = torch.exp(z[..., N_PRICES:]) * (mean_volume[:, None, None] + 1) - 1
    return torch.cat([prices, volume], dim=-1)
