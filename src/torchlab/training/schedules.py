"""Learning-rate schedules.

Builders are called as ``builder(optimizer, steps_per_epoch, max_epochs, *, settings...)``
and return a :class:`Schedule` that says whether it steps per optimizer step or per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from torch.optim import Optimizer, lr_scheduler

from torchlab.errors import ConfigError
from torchlab.registry import SCHEDULERS


@dataclass
class Schedule:
    """A scheduler and when to step it (``plateau`` also needs the monitored metric)."""

    scheduler: Any | None
    interval: Literal["step", "epoch"] = "epoch"
    monitor: str | None = None

    def after_step(self) -> None:
        if self.scheduler is not None and self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, logs: dict[str, float]) -> None:
        if self.scheduler is None or self.interval != "epoch":
            return
        if self.monitor is not None:
            if self.monitor not in logs:
                raise ConfigError(
                    f"schedule.monitor '{self.monitor}' is not among the logged metrics "
                    f"({', '.join(k for k in logs if '/' in k)}); pick one of those."
                )
            self.scheduler.step(logs[self.monitor])
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


@SCHEDULERS.register("none")
def constant(optimizer: Optimizer, steps_per_epoch: int, max_epochs: int, /) -> Schedule:
    """Keep the learning rate fixed."""
    return Schedule(None)


@SCHEDULERS.register("step")
def step(
    optimizer: Optimizer,
    steps_per_epoch: int,
    max_epochs: int,
    /,
    *,
    step_size: int = 10,
    gamma: float = 0.1,
) -> Schedule:
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""
    return Schedule(lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma))


@SCHEDULERS.register("multistep")
def multistep(
    optimizer: Optimizer,
    steps_per_epoch: int,
    max_epochs: int,
    /,
    *,
    milestones: tuple[int, ...] = (30, 60),
    gamma: float = 0.1,
) -> Schedule:
    """Multiply the rate by ``gamma`` at each milestone epoch."""
    return Schedule(lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma))


@SCHEDULERS.register("exponential")
def exponential(
    optimizer: Optimizer, steps_per_epoch: int, max_epochs: int, /, *, gamma: float = 0.95
) -> Schedule:
    """Multiply the rate by ``gamma`` after every epoch."""
    return Schedule(lr_scheduler.ExponentialLR(optimizer, gamma=gamma))


@SCHEDULERS.register("cosine")
def cosine(
    optimizer: Optimizer,
    steps_per_epoch: int,
    max_epochs: int,
    /,
    *,
    warmup_epochs: float = 0.0,
    min_lr_ratio: float = 0.0,
) -> Schedule:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` times the base rate, per step.

    Loshchilov & Hutter, SGDR (https://arxiv.org/abs/1608.03983), without restarts.
    """
    total = max(1, steps_per_epoch * max_epochs)
    warmup = int(warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return Schedule(lr_scheduler.LambdaLR(optimizer, factor), interval="step")


@SCHEDULERS.register("onecycle")
def onecycle(
    optimizer: Optimizer,
    steps_per_epoch: int,
    max_epochs: int,
    /,
    *,
    max_lr_factor: float = 1.0,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """Smith's one-cycle policy (https://arxiv.org/abs/1708.07120) peaking at ``optim.lr``."""
    peaks = [group["lr"] * max_lr_factor for group in optimizer.param_groups]
    return Schedule(
        lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=peaks,
            total_steps=max(1, steps_per_epoch * max_epochs),
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
        ),
        interval="step",
    )


@SCHEDULERS.register("plateau")
def plateau(
    optimizer: Optimizer,
    steps_per_epoch: int,
    max_epochs: int,
    /,
    *,
    monitor: str = "val/loss",
    mode: Literal["min", "max"] = "min",
    factor: float = 0.1,
    patience: int = 5,
    min_lr: float = 0.0,
) -> Schedule:
    """Cut the rate by ``factor`` when ``monitor`` stops improving for ``patience`` epochs."""
    scheduler = lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr
    )
    return Schedule(scheduler, monitor=monitor)


def build_schedule(
    config: Any, optimizer: Optimizer, steps_per_epoch: int, max_epochs: int
) -> Schedule:
    return SCHEDULERS.build(config, "schedule", optimizer, steps_per_epoch, max_epochs)
