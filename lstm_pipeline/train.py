"""Training: device choice, seeding, early stopping, the epoch loop and price predictions.

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
    precision: str = "fp32"
    threads: int = 1  # torch CPU threads in use


@dataclass(frozen=True)
class Runtime:
    """Where and how the math runs: device, autocast dtype (None = fp32) and the loss."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )


def make_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision, and tune the backend for it (cuDNN autotuner, threads)."""
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not bf16_ok:
        raise InputError(f"precision bf16 needs a CUDA GPU with bf16 support, not {device.type}")
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_ok)
    return Runtime(device, torch.bfloat16 if use_bf16 else None, make_loss(cfg.loss))


def make_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss on log returns, measured in RETURN_SCALE (percent) units.

    Percent units keep loss values readable (~1) and give huber's delta of 1 a meaning.
    """
    losses: dict[str, Callable[..., torch.Tensor]] = {
        "mse": nn.functional.mse_loss,
        "mae": nn.functional.l1_loss,
        "huber": nn.functional.huber_loss,
    }
    base = losses[name]
    return lambda pred, target: base(pred / RETURN_SCALE, target / RETURN_SCALE)


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # fused: one kernel for the whole update on CUDA instead of several per parameter
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda"
    )


def train_epoch(
    model: nn.Module,
    data: WindowSet,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    runtime: Runtime,
    grad_clip: float = 0.0,
) -> float:
    """One pass over shuffled windows; returns the mean training loss."""
    model.train()
    order = torch.randperm(len(data), generator=generator).to(data.starts.device)
    total = torch.zeros((), device=data.starts.device)
    for idx in order.split(batch_size):
        with runtime.autocast():
            loss = runtime.loss(model(data.inputs(idx)), data.targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += loss.detach() * len(idx)  # no .item() per batch: it would sync the GPU
    return float(total) / len(data)


@torch.no_grad()
def predict_log_returns(
    model: nn.Module, data: WindowSet, batch_size: int = 4096, runtime: Runtime | None = None
) -> torch.Tensor:
    """[N, H] predicted log returns for every window, in window order."""
    model.eval()
    idx = torch.arange(len(data), device=data.starts.device)
    with runtime.autocast() if runtime else contextlib.nullcontext():
        parts = [model(data.inputs(batch)) for batch in idx.split(batch_size)]
    return torch.cat(parts).float()


def eval_loss(model: nn.Module, data: WindowSet, runtime: Runtime | None = None) -> float:
    loss = runtime.loss if runtime else make_loss("mse")
    return float(loss(predict_log_returns(model, data, runtime=runtime), data.targets))


def predict_prices(model: nn.Module, data: WindowSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forecast [N, H], actual [N, H], last_close [N]) prices for scoring against naive."""
    data = data.to(next(model.parameters()).device)
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
    """AdamW with early stopping on val loss; restores the best epoch's weights at the end."""
    set_seed(cfg.seed)
    runtime = make_runtime(cfg)
    model = model.to(runtime.device)
    train, val = train.to(runtime.device), val.to(runtime.device)
    optimizer = make_optimizer(model, cfg, runtime.device)
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
    train_seconds = 0.0
    for epoch in range(1, cfg.max_epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        train_loss = train_epoch(
            model, train, optimizer, cfg.batch_size, generator, runtime, cfg.grad_clip
        )
        seconds = time.perf_counter() - started
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
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        result.stopped_epoch = epoch
        if stop:
            log.info("early stop at epoch %d; best epoch %d", epoch, stopper.best_epoch)
            break
        if scheduler is not None:
            scheduler.step(val_loss)
    model.load_state_dict(best_state)
    model.eval()
    result.best_epoch = stopper.best_epoch
    result.train_windows_per_s = len(train) * result.stopped_epoch / max(train_seconds, 1e-9)
    return result
