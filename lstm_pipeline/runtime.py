"""Where and how the math runs: device choice, precision (autocast), backend tuning, loss."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from lstm_pipeline.config import Precision, TrainConfig
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
# Measured on a 2-core Xeon with AMX, our training step fp32 vs bf16 back to back (see
# docs/results/benchmarks.md): bf16 autocast is 1.1-2x faster from hidden size 16 up (batch 64
# and 256), and no faster at 8, where casting costs about what the bf16 kernels save.
CPU_BF16_MIN_HIDDEN = 16
# Measured on a 2-core Xeon with AMX, our training step on one thread and on two back to back
# (docs/results/benchmarks.md, "Threads"): below this batch size x hidden size one thread is as
# fast in a quiet hour (the smoke model, batch 64 x 8: 44.6-47.1k against 45.0-45.6k windows/s)
# and faster when the machine is busy (26.9k against 19.7k), because the matrix products are
# too small to share and the threads' hand-offs cost more than they save; and it leaves a core
# free (baseline_workers.baselines_ahead). From here on two threads tie or win (the default
# model, 256 x 64: 1.9k against 1.5k).
ONE_THREAD_BELOW = 64 * 64
# torch's own choice when this module is imported (a core each, or $OMP_NUM_THREADS): what a
# fit with `threads: null` goes back to after a fit on one thread in the same process
DEFAULT_THREADS = torch.get_num_threads()
# the x86 features that run bf16 matrix products natively; without them bf16 is emulated (slow)
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AMX or AVX-512 BF16)."""
    query = getattr(torch.cpu, "get_capabilities", None)  # public in recent torch (cpuinfo)
    if query is not None:
        capabilities = query()
        return any(capabilities.get(flag, False) for flag in NATIVE_BF16_FLAGS)
    try:  # an older torch on Linux: the kernel's flags
        return bool(NATIVE_BF16_FLAGS & set(Path("/proc/cpuinfo").read_text().split()))
    except OSError:
        return False


def choose_autocast(
    precision: Precision, device: torch.device, hidden_size: int
) -> torch.dtype | None:
    """bf16 autocast, or None for fp32: `auto` picks bf16 where the device runs it natively and
    the model is large enough for it to be faster; `bf16` where the device has it natively."""
    native = {"cuda": torch.cuda.is_bf16_supported, "cpu": cpu_has_native_bf16}
    supported = device.type in native and native[device.type]()
    if precision == "bf16" and not supported:
        raise InputError(
            "precision bf16 needs a CUDA GPU with bf16 support or a CPU with native bf16 "
            f"(AMX or AVX-512 BF16), not this {device.type}; use precision fp32 or auto"
        )
    min_hidden = BF16_MIN_HIDDEN if device.type == "cuda" else CPU_BF16_MIN_HIDDEN
    auto_bf16 = precision == "auto" and supported and hidden_size >= min_hidden
    return torch.bfloat16 if precision == "bf16" or auto_bf16 else None


def choose_threads(
    threads: int | None, device: torch.device, batch_size: int, hidden_size: int
) -> int:
    """torch's CPU threads for a fit: `threads` where set, else one for a CPU fit of a model
    too small to share (batch size x hidden size below ONE_THREAD_BELOW), else DEFAULT_THREADS."""
    if threads is not None:
        return threads
    if device.type == "cpu" and batch_size * hidden_size < ONE_THREAD_BELOW:
        return 1
    return DEFAULT_THREADS


def fit_threads(cfg: TrainConfig, hidden_size: int) -> int:
    """The CPU threads a fit of this config takes (`choose_threads` on its device)."""
    return choose_threads(cfg.threads, resolve_device(cfg.device), cfg.batch_size, hidden_size)


def make_runtime(
    cfg: TrainConfig, hidden_size: int = BF16_MIN_HIDDEN, quantiles: tuple[float, ...] = ()
) -> Runtime:
    """Pick the device, precision (`choose_autocast`) and threads (`choose_threads`), and tune
    the backend for them (cuDNN autotuner). A quantile model (`quantiles`) trains on the
    pinball loss."""
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    torch.set_num_threads(choose_threads(cfg.threads, device, cfg.batch_size, hidden_size))
    autocast_dtype = choose_autocast(cfg.precision, device, hidden_size)
    return Runtime(device, autocast_dtype, make_loss(cfg.loss, quantiles, device))


@contextmanager
def sharing_cores(workers: int = 1) -> Iterator[None]:
    """torch's intra-op threads less `workers` (at least one) for the block, while that many
    worker processes each keep a core busy: OpenMP threads that wait on a busy core spin, and
    beside one worker two threads predicted 183k windows in 1.2-1.9 s against 0.37 s on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
