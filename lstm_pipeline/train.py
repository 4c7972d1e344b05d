"""Training: seeding, early stopping, the epoch loop and price predictions.

Device and precision live in runtime.py, the optimisation step (eager or CUDA graph) in
train_step.py.
No MLflow here: `fit` reports each epoch through an optional callback the flow wires to tracking.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import nn

from lstm_pipeline.config import TrainConfig
from lstm_pipeline.errors import TrainingDivergedError
from lstm_pipeline.features import WindowSet
from lstm_pipeline.model import LSTMForecaster
from lstm_pipeline.runtime import Runtime, make_loss, make_runtime
from lstm_pipeline.train_step import TrainStep, make_step

if TYPE_CHECKING:
    from lstm_pipeline.calibrate import Calibration

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every device's generator, cuda included


@dataclass
class EarlyStopping:
    """Stop after `patience` epochs without a val-loss improvement larger than `min_delta`."""

    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    def step(self, val_loss: float, epoch: int) -> bool:
        """Record one epoch's val loss; True when training should stop."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


@dataclass
class FitResult:
    model: LSTMForecaster  # with the best epoch's weights restored, in eval mode
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    best_epoch: int = 0
    stopped_epoch: int = 0
    train_windows_per_s: float = 0.0
    epochs_seconds: float = 0.0  # wall time of the epoch loop: training, validation, callbacks
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 1  # torch CPU threads in use
    calibration: Calibration | None = None  # a quantile model's conformal scales (pipeline.py)


def train_epoch(
    model: nn.Module, data: WindowSet, step: TrainStep, batch_size: int, generator: torch.Generator
) -> tuple[float, int]:
    """One pass over shuffled windows; returns (mean training loss, windows trained)."""
    model.train()
    order = torch.randperm(len(data), generator=generator).to(data.starts.device)
    total = torch.zeros((), device=data.starts.device)
    trained = 0
    for idx in order.split(batch_size):
        loss = step(idx)
        if loss is None:  # a graph-captured step skips the last partial batch
            continue
        total += loss * len(idx)  # no .item() per batch: it would sync the GPU
        trained += len(idx)
    return float(total) / max(trained, 1), trained


@torch.no_grad()
def predict_log_returns(
    model: nn.Module, data: WindowSet, batch_size: int = 4096, runtime: Runtime | None = None
) -> torch.Tensor:
    """Predicted log returns for every window, in window order: [N, H] from a point model,
    [N, H, Q] quantiles from a quantile model."""
    model.eval()
    idx = torch.arange(len(data), device=data.starts.device)
    with runtime.autocast() if runtime else contextlib.nullcontext():
        parts = [model(data.inputs(batch)) for batch in idx.split(batch_size)]
    return torch.cat(parts).float()


def eval_loss(model: LSTMForecaster, data: WindowSet, runtime: Runtime | None = None) -> float:
    loss = runtime.loss if runtime else make_loss("mse", model.quantiles, data.starts.device)
    return float(loss(predict_log_returns(model, data, runtime=runtime), data.targets))


class Predictions(NamedTuple):
    """A model's forecasts for every window of a split, in prices, beside what happened."""

    forecast: np.ndarray  # [N, H] the point forecast (a quantile model's median)
    actual: np.ndarray  # [N, H]
    last_close: np.ndarray  # [N] the naive forecast for every horizon
    quantiles: np.ndarray | None  # [N, H, Q] at the model's levels; None for a point model


def predict_prices(model: LSTMForecaster, data: WindowSet) -> Predictions:
    """Forecasts in prices for scoring against naive (and the baselines, with quantiles)."""
    data = data.to(next(model.parameters()).device)
    last_close = data.last_close().double()[:, None]
    out = predict_log_returns(model, data).double()
    actual = last_close * torch.exp(data.targets.double())
    if not model.quantiles:
        forecast, quantiles = last_close * torch.exp(out), None
    else:
        prices = last_close[:, :, None] * torch.exp(out)  # [N, H, Q]
        forecast, quantiles = prices[..., model.median_index], prices.cpu().numpy()
    return Predictions(
        forecast.cpu().numpy(), actual.cpu().numpy(), last_close[:, 0].cpu().numpy(), quantiles
    )


def fit(
    model: LSTMForecaster,
    train: WindowSet,
    val: WindowSet,
    cfg: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
) -> FitResult:
    """AdamW with early stopping on val loss; restores the best epoch's weights at the end."""
    set_seed(cfg.seed)
    runtime = make_runtime(cfg, model.rnn.hidden_size, model.quantiles)
    model = model.to(runtime.device)
    train, val = train.to(runtime.device), val.to(runtime.device)
    step, optimizer = make_step(model, train, cfg, runtime)
    scheduler = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience
        )
        if cfg.lr_schedule == "plateau"
        else None
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    stopper = EarlyStopping(cfg.patience, cfg.min_delta)
    result = FitResult(
        model=model,
        device=str(runtime.device),
        precision="bf16" if runtime.autocast_dtype else "fp32",
        threads=torch.get_num_threads(),
    )
    log.info(
        "training on %s (%s, %d CPU threads): %d train / %d val windows",
        result.device,
        result.precision,
        result.threads,
        len(train),
        len(val),
    )
    best_state = copy.deepcopy(model.state_dict())
    train_seconds, windows_trained = 0.0, 0
    loop_started = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        # a float32 tensor when graph-captured: 7 significant digits is all it holds
        lr = float(f"{float(optimizer.param_groups[0]['lr']):.7g}")
        started = time.perf_counter()
        train_loss, trained = train_epoch(model, train, step, cfg.batch_size, generator)
        seconds = time.perf_counter() - started
        windows_trained += trained
        train_seconds += seconds
        val_loss = eval_loss(model, val, runtime)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingDivergedError(f"loss became {train_loss}/{val_loss} at epoch {epoch}")
        metrics = {
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "epoch_seconds": seconds,
        }
        result.history.append(metrics)
        stop = stopper.step(val_loss, epoch)
        if stopper.best_epoch == epoch:
            best_state = copy.deepcopy(model.state_dict())
        log.info(
            "epoch %d/%d train_loss %.4f val_loss %.4f lr %.2g%s",
            epoch,
            cfg.max_epochs,
            train_loss,
            val_loss,
            lr,
            " *" if stopper.best_epoch == epoch else "",
            extra={"progress": ("epochs", epoch, epoch if stop else cfg.max_epochs)},
        )
        if on_epoch_end is not None:
            # wall time stays out of `history`, so a seeded fit's history is reproducible
            on_epoch_end(epoch, metrics)
        result.stopped_epoch = epoch
        if stop:
            log.info("early stop at epoch %d; best epoch %d", epoch, stopper.best_epoch)
            break
        if scheduler is not None:
            scheduler.step(val_loss)
    result.epochs_seconds = time.perf_counter() - loop_started
    model.load_state_dict(best_state)
    model.eval()
    result.best_epoch = stopper.best_epoch
    result.train_windows_per_s = windows_trained / max(train_seconds, 1e-9)
    return result
