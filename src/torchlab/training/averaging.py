"""Weight averaging as callbacks: an exponential moving average (EMA) and stochastic weight
averaging (SWA).

Both keep a second copy of every weight. From the end of an epoch's training until the next
epoch starts, the model holds the *average*, so validation, early stopping, the best
weights and the checkpoint all see the averaged model; the training weights wait in the
callback and come back before training goes on. The swapped state is part of the
callback's ``state_dict``, so a resumed run continues exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchlab.registry import CALLBACKS
from torchlab.training.callbacks import Callback, StepLog

if TYPE_CHECKING:
    from torchlab.training.loop import Trainer


class WeightAveraging(Callback):
    """Keeps ``other``: the average while training, the training weights while evaluating."""

    def __init__(self) -> None:
        self.other: dict[str, torch.Tensor] | None = None
        self.swapped = False
        self.updates = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.other is None:
            self.other = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    def on_epoch_start(self, trainer: Trainer) -> None:
        if self.swapped:
            self.swap(trainer.model)

    def on_train_epoch_end(self, trainer: Trainer) -> None:
        if self.updates and not self.swapped:
            self.swap(trainer.model)
            self.after_swap_in(trainer)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.swapped:
            self.swap(trainer.model)

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        assert self.other is not None
        for name, value in model.state_dict().items():
            held = value.clone()
            value.copy_(self.other[name])
            self.other[name].copy_(held)
        self.swapped = not self.swapped

    @torch.no_grad()
    def accumulate(self, model: nn.Module, weight: float) -> None:
        """``other += weight * (current - other)`` for float tensors; others are copied."""
        assert self.other is not None
        for name, value in model.state_dict().items():
            average = self.other[name]
            if average.is_floating_point():
                average.lerp_(value.detach(), weight)
            else:
                average.copy_(value)
        self.updates += 1

    def after_swap_in(self, trainer: Trainer) -> None:
        """Hook for averages whose normalisation statistics must be recomputed."""

    def state_dict(self) -> dict[str, Any]:
        return {"other": self.other, "swapped": self.swapped, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:  # copies: later updates must not change the caller's saved state
            other = state["other"]
            self.other = {k: v.clone() for k, v in other.items()} if other is not None else None
            self.swapped, self.updates = state["swapped"], state["updates"]


@CALLBACKS.register("ema")
class EMA(WeightAveraging):
    """Exponential moving average of the weights after every optimizer step.

    ``decay`` is warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, as
    in TensorFlow's ExponentialMovingAverage, so early averages are not dominated by the
    random initial weights. Polyak & Juditsky (1992); used by most modern image models.

    Args:
        decay: Weight of the old average at each step, e.g. 0.999.
    """

    def __init__(self, *, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay

    def on_train_step_end(self, trainer: Trainer, step: StepLog) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.accumulate(trainer.model, 1.0 - decay)


@CALLBACKS.register("swa")
class SWA(WeightAveraging):
    """Stochastic weight averaging: the equal average of the weights at the end of each
    epoch from ``start_epoch`` on, with BatchNorm statistics recomputed for the average.

    Izmailov et al., 2018 (https://arxiv.org/abs/1803.05407). Pair it with a constant or
    cyclic learning rate over the averaging epochs.

    Args:
        start_epoch: First epoch (0-based) whose weights enter the average.
    """

    def __init__(self, *, start_epoch: int = 0) -> None:
        super().__init__()
        self.start_epoch = start_epoch

    def on_train_epoch_end(self, trainer: Trainer) -> None:
        if trainer.state.epoch >= self.start_epoch:
            self.accumulate(trainer.model, 1.0 / (self.updates + 1))
        super().on_train_epoch_end(trainer)

    def after_swap_in(self, trainer: Trainer) -> None:
        update_batch_norm(trainer)


@torch.no_grad()
def update_batch_norm(trainer: Trainer) -> None:
    """Recompute BatchNorm running statistics of the current weights over one training pass."""
    norms = [m for m in trainer.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    trainer.model.train()
    for batch in trainer.train_loader.epoch(trainer.state.epoch):
        trainer.model(batch.to(trainer.device).inputs)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
