"""Training: device choice, seeding, early stopping, the epoch loop and price predictions.

No MLflow here: `fit` reports each epoch through an optional callback the flow wires to tracking.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lstm_pipeline.config import TrainConfig
from lstm_pipeline.errors import InputError
from lstm_pipeline.features import WindowSet
from lstm_pipeline.model import RETURN_SCALE, LSTMForecaster

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; nothing from this run may be registered."""


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is an InputError."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        name = next(d for d, ok in available.items() if ok)
    elif not available.get(name, False):
        raise InputError(f"device {name!r} is not available on this machine (try --device auto)")
    return torch.device(name)


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
    device: str = "cpu"


def _loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # MSE in RETURN_SCALE units keeps loss values readable (~1) in logs and the MLflow UI
    return nn.functional.mse_loss(pred / RETURN_SCALE, target / RETURN_SCALE)


def train_epoch(
    model: nn.Module,
    data: WindowSet,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over shuffled windows; returns the mean training loss."""
    model.train()
    order = torch.randperm(len(data), generator=generator).to(data.starts.device)
    total = torch.zeros((), device=data.starts.device)
    for idx in order.split(batch_size):
        loss = _loss(model(data.inputs(idx)), data.targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(idx)  # no .item() per batch: it would sync the GPU
    return float(total) / len(data)


@torch.no_grad()
def predict_log_returns(model: nn.Module, data: WindowSet, batch_size: int = 4096) -> torch.Tensor:
    """[N, H] predicted log returns for every window, in window order."""
    model.eval()
    parts = [
        model(data.inputs(idx))
        for idx in torch.arange(len(data), device=data.starts.device).split(batch_size)
    ]
    return torch.cat(parts)


def eval_loss(model: nn.Module, data: WindowSet, batch_size: int = 4096) -> float:
    return float(_loss(predict_log_returns(model, data, batch_size), data.targets))


def predict_prices(model: nn.Module, data: WindowSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forecast [N, H], actual [N, H], last_close [N]) prices for scoring against naive."""
    last_close = data.last_close().double()[:, None]
    forecast = last_close * torch.exp(predict_log_returns(model, data).double())
    actual = last_close * torch.exp(data.targets.double())
    return forecast.cpu().numpy(), actual.cpu().numpy(), last_close[:, 0].cpu().numpy()


def fit(
    model: LSTMForecaster,
    train: WindowSet,
    val: WindowSet,
    cfg: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
) -> FitResult:
    """Adam with early stopping on val loss; restores the best epoch's weights at the end."""
    set_seed(cfg.seed)
    device = resolve_device(cfg.device)
    model = model.to(device)
    train, val = train.to(device), val.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    stopper = EarlyStopping(cfg.patience, cfg.min_delta)
    result = FitResult(model=model, device=str(device))
    best_state = copy.deepcopy(model.state_dict())
    train_seconds = 0.0
    for epoch in range(1, cfg.max_epochs + 1):
        started = time.perf_counter()
        train_loss = train_epoch(model, train, optimizer, cfg.batch_size, generator)
        train_seconds += time.perf_counter() - started
        val_loss = eval_loss(model, val)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingDivergedError(f"loss became {train_loss}/{val_loss} at epoch {epoch}")
        metrics = {
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
        }
        result.history.append(metrics)
        stop = stopper.step(val_loss, epoch)
        if stopper.best_epoch == epoch:
            best_state = copy.deepcopy(model.state_dict())
        log.info(
            "epoch %d/%d train_loss %.4f val_loss %.4f%s",
            epoch,
            cfg.max_epochs,
            train_loss,
            val_loss,
            " *" if stopper.best_epoch == epoch else "",
        )
        if on_epoch_end is not None:
            # wall time stays out of `history`, so a seeded fit's history is reproducible
            on_epoch_end(epoch, {**metrics, "epoch_seconds": time.perf_counter() - started})
        result.stopped_epoch = epoch
        if stop:
            log.info("early stop at epoch %d; best epoch %d", epoch, stopper.best_epoch)
            break
    model.load_state_dict(best_state)
    model.eval()
    result.best_epoch = stopper.best_epoch
    result.train_windows_per_s = len(train) * result.stopped_epoch / max(train_seconds, 1e-9)
    return result
