"""Where and how the math runs: device choice, precision (autocast), backend tuning, loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from lstm_pipeline.config import TrainConfig
from lstm_pipeline.errors import InputError
from lstm_pipeline.model import RETURN_SCALE


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


# Measured on an H100 (benchmarks/results): bf16 autocast is slower than fp32 (TF32) for the
# default hidden size 64, where casts cost more than they save, and ~1.5x faster from 256 up.
BF16_MIN_HIDDEN = 256


def make_runtime(
    cfg: TrainConfig, hidden_size: int = BF16_MIN_HIDDEN, quantiles: tuple[float, ...] = ()
) -> Runtime:
    """Pick the device and precision, and tune the backend for it (cuDNN autotuner, threads).

    precision "auto" is bf16 on CUDA GPUs that support it for models of hidden size >=
    BF16_MIN_HIDDEN, else fp32. A quantile model (`quantiles`) trains on the pinball loss.
    """
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not bf16_ok:
        raise InputError(f"precision bf16 needs a CUDA GPU with bf16 support, not {device.type}")
    use_bf16 = cfg.precision == "bf16" or (
        cfg.precision == "auto" and bf16_ok and hidden_size >= BF16_MIN_HIDDEN
    )
    return Runtime(
        device, torch.bfloat16 if use_bf16 else None, make_loss(cfg.loss, quantiles, device)
    )


def make_loss(
    name: str, quantiles: tuple[float, ...] = (), device: torch.device | None = None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss on log returns, measured in RETURN_SCALE (percent) units: `name` for a
    point model, the pinball loss averaged over `quantiles` for a quantile model.

    Percent units keep loss values readable (~1) and give huber's delta of 1 a meaning.
    """
    if quantiles:
        # the levels live where the math runs: no copy per step (a CUDA graph forbids one)
        return partial(pinball_loss, levels=torch.tensor(quantiles, device=device))
    losses: dict[str, Callable[..., torch.Tensor]] = {
        "mse": nn.functional.mse_loss,
        "mae": nn.functional.l1_loss,
        "huber": nn.functional.huber_loss,
    }
    base = losses[name]
    return lambda pred, target: base(pred / RETURN_SCALE, target / RETURN_SCALE)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Mean pinball (quantile) loss of quantiles `pred` [B, H, Q] at `levels` [Q] for
    `target` [B, H], in percent units: minimised by the true quantiles."""
    error = (target.unsqueeze(-1) - pred) / RETURN_SCALE  # [B, H, Q]
    return torch.maximum(levels * error, (levels - 1) * error).mean()
