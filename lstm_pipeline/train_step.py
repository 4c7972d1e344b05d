"""The optimisation step on a batch of window indices: eager, or replayed as a CUDA graph.

A small recurrent model on a GPU is bound by the CPU launching kernels, not by the GPU: on
an H100 the eager step of the default model keeps the GPU ~15% busy. Capturing the whole
step (forward, loss, backward, clipping, AdamW) once and replaying it leaves one index copy
and one replay per batch on the CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from lstm_pipeline.config import TrainConfig
from lstm_pipeline.features import WindowSet
from lstm_pipeline.runtime import Runtime


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, device: torch.device, capturable: bool = False
) -> torch.optim.AdamW:
    """AdamW; fused (one kernel per update) on CUDA, with a tensor lr when graph-captured
    so that the lr schedule still reaches the replayed update."""
    lr = torch.tensor(cfg.lr, device=device) if capturable else cfg.lr
    return torch.optim.AdamW(
        model.parameters(),
        lr=lr,
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
        capturable=capturable,
    )


class TrainStep:
    """Eager step: zero grads, forward, loss, backward, clip, update. Returns the loss."""

    def __init__(
        self,
        model: nn.Module,
        data: WindowSet,
        optimizer: torch.optim.Optimizer,
        runtime: Runtime,
        grad_clip: float,
    ) -> None:
        self.model, self.data, self.optimizer = model, data, optimizer
        self.runtime, self.grad_clip = runtime, grad_clip

    def __call__(self, idx: torch.Tensor) -> torch.Tensor | None:
        self.optimizer.zero_grad(set_to_none=True)
        return self._update(idx)

    def _update(self, idx: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            loss = self.runtime.loss(self.model(self.data.inputs(idx)), self.data.targets[idx])
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss.detach()


class GraphedTrainStep(TrainStep):
    """The same step captured as a CUDA graph after a few eager warm-up steps.

    Shapes are static, so only full batches are trained (like `drop_last`): the few windows
    of the last partial batch are skipped in that epoch; shuffling changes them every epoch.
    """

    WARMUP_STEPS = 3  # eager steps on a side stream before capture, as CUDA graphs require

    def __init__(
        self,
        model: nn.Module,
        data: WindowSet,
        optimizer: torch.optim.Optimizer,
        runtime: Runtime,
        grad_clip: float,
        batch_size: int,
    ) -> None:
        super().__init__(model, data, optimizer, runtime, grad_clip)
        self.static_idx = torch.zeros(batch_size, dtype=torch.long, device=data.starts.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_loss = torch.zeros((), device=data.starts.device)
        self.warm_steps = 0

    def __call__(self, idx: torch.Tensor) -> torch.Tensor | None:
        if len(idx) != len(self.static_idx):
            return None
        if self.graph is None and self.warm_steps < self.WARMUP_STEPS:
            self.warm_steps += 1
            return self._on_side_stream(idx)
        if self.graph is None:
            self._capture()
        self.static_idx.copy_(idx)
        assert self.graph is not None
        self.graph.replay()
        return self.static_loss

    def _on_side_stream(self, idx: torch.Tensor) -> torch.Tensor:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loss = super().__call__(idx)
        torch.cuda.current_stream().wait_stream(side)
        assert loss is not None
        return loss

    def _capture(self) -> None:
        # grads must not exist yet: backward inside the capture allocates them in its pool
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self._update(self.static_idx)


def make_step(
    model: nn.Module,
    data: WindowSet,
    cfg: TrainConfig,
    runtime: Runtime,
) -> tuple[TrainStep, torch.optim.AdamW]:
    """The step `fit` uses: graph-captured on CUDA when `cfg.cuda_graphs` and the data holds
    enough full batches, else eager."""
    # a capture pays off only over many full batches; with fewer, every window must be trained
    enough_batches = len(data) >= 4 * cfg.batch_size * (GraphedTrainStep.WARMUP_STEPS + 1)
    graphed = cfg.cuda_graphs and runtime.device.type == "cuda" and enough_batches
    optimizer = make_optimizer(model, cfg, runtime.device, capturable=graphed)
    if graphed:
        return GraphedTrainStep(model, data, optimizer, runtime, cfg.grad_clip, cfg.batch_size), (
            optimizer
        )
    return TrainStep(model, data, optimizer, runtime, cfg.grad_clip), optimizer
