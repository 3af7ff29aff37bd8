"""Learning-rate range test (Smith, https://arxiv.org/abs/1506.01186, section 3.3).

Train for a few hundred steps while the learning rate grows exponentially from ``start_lr``
to ``end_lr``, smooth the loss with a bias-corrected exponential moving average, stop once
it diverges, and suggest a rate a decade below the one with the lowest smoothed loss (where
the loss still falls fast and training is stable). The model, optimizer and random
generators are restored afterwards, so training from there is as if the test never ran.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchlab.data.loaders import Loader
from torchlab.errors import ConfigError
from torchlab.tasks.base import Task
from torchlab.training.precision import Precision
from torchlab.training.state import rng_state, set_rng_state


@dataclass(frozen=True)
class LRFinderResult:
    """The sweep: learning rates, raw and smoothed losses, and the suggested rate."""

    lrs: list[float]
    losses: list[float]  # raw loss of each step
    smoothed: list[float]  # bias-corrected exponential moving average of ``losses``
    suggestion: float
    min_loss_lr: float  # the rate with the lowest smoothed loss
    diverged: bool  # the sweep stopped early because the loss blew up

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: Path) -> None:
        """Write ``lr_finder.json`` and ``lr_finder.png`` into ``folder``."""
        (folder / "lr_finder.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        self.plot(folder / "lr_finder.png")

    def plot(self, path: Path) -> Path:
        """Smoothed loss against the learning rate (log scale), suggestion marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses, color="0.75", linewidth=0.8, label="loss")
        ax.plot(self.lrs, self.smoothed, label="smoothed loss")
        ax.axvline(self.suggestion, color="tab:red", linestyle="--")
        index = min(range(len(self.lrs)), key=lambda i: abs(self.lrs[i] - self.suggestion))
        ax.plot([self.suggestion], [self.smoothed[index]], "o", color="tab:red")
        ax.annotate(
            f"suggested lr = {self.suggestion:.2e}",
            (self.suggestion, self.smoothed[index]),
            textcoords="offset points",
            xytext=(8, 8),
            color="tab:red",
        )
        ax.set_xscale("log")
        low, high = min(self.smoothed), max(self.smoothed[: max(1, len(self.smoothed) // 2)])
        ax.set_ylim(low - 0.1 * abs(low), high + 0.5 * (high - low) + 1e-8)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("learning-rate range test")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def lr_range_test(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    loader: Loader,
    *,
    device: torch.device,
    precision: Precision | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    beta: float = 0.9,
    diverge_factor: float = 4.0,
) -> LRFinderResult:
    """Sweep the learning rate exponentially and suggest one; restores everything after.

    Args:
        model, task, optimizer, loader: What training would use; ``optimizer`` is stepped.
        start_lr, end_lr: The sweep's range (``end_lr`` is reached only without divergence).
        num_steps: Optimizer steps of the sweep (batches, cycling over epochs if needed).
        beta: Smoothing of the loss's exponential moving average.
        diverge_factor: Stop once the smoothed loss exceeds this many times its minimum.
    """
    if not 0 < start_lr < end_lr:
        raise ConfigError(
            f"The learning-rate range test needs 0 < start_lr < end_lr; received "
            f"start_lr={start_lr}, end_lr={end_lr}."
        )
    if num_steps < 10:
        raise ConfigError(f"The range test needs num_steps >= 10; received num_steps={num_steps}.")
    if len(loader) == 0:
        raise ConfigError("The training split is empty, so there is nothing to sweep on.")
    precision = precision or Precision("32", device)
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = rng_state()
    was_training = model.training
    try:
        lrs, losses, smoothed = _sweep(
            model, task, optimizer, loader, device, precision,
            start_lr, end_lr, num_steps, beta, diverge_factor,
        )  # fmt: skip
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        optimizer.zero_grad(set_to_none=True)
        set_rng_state(saved_rng)
        model.train(was_training)
    diverged = len(lrs) < num_steps
    finite = [i for i, s in enumerate(smoothed) if math.isfinite(s)]
    if len(finite) < 3:
        raise ConfigError(
            f"The loss was not finite from the first steps of the range test (start_lr="
            f"{start_lr}); lower start_lr or check the data for extreme values."
        )
    best = min(finite, key=lambda i: smoothed[i])
    min_loss_lr = lrs[best]
    suggestion = max(min_loss_lr / 10, start_lr)
    return LRFinderResult(lrs, losses, smoothed, suggestion, min_loss_lr, diverged)


def _sweep(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    loader: Loader,
    device: torch.device,
    precision: Precision,
    start_lr: float,
    end_lr: float,
    num_steps: int,
    beta: float,
    diverge_factor: float,
) -> tuple[list[float], list[float], list[float]]:
    gamma = (end_lr / start_lr) ** (1 / (num_steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    model.train()
    epoch = 0
    while len(lrs) < num_steps:
        for batch in loader.epoch(epoch):
            lr = start_lr * gamma ** len(lrs)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            batch = batch.to(device, non_blocking=True)
            with precision.autocast():
                loss = task.training_step(model, batch).loss
            precision.scaler.scale(loss).backward()
            precision.scaler.step(optimizer)
            precision.scaler.update()
            optimizer.zero_grad(set_to_none=True)
            value = loss.item()  # one sync per step: the sweep needs every loss to stop early
            average = beta * average + (1 - beta) * value
            smooth = average / (1 - beta ** (len(lrs) + 1))  # bias correction of the EMA
            lrs.append(lr)
            losses.append(value)
            smoothed.append(smooth)
            best = min(best, smooth)
            if not math.isfinite(smooth) or (len(lrs) > 10 and smooth > diverge_factor * best):
                return lrs, losses, smoothed
            if len(lrs) >= num_steps:
                break
        epoch += 1
    return lrs, losses, smoothed


def find_lr(parts: Any, train_loader: Loader, **settings: Any) -> LRFinderResult:
    """The range test on a built experiment (see :func:`torchlab.engine.experiment.build_experiment`)."""
    from torchlab.training.optim import build_optimizer

    config = parts.config
    optim = config.optim.model_copy(update={"lr": 1e-3}) if config.optim.lr == "auto" else None
    optimizer = build_optimizer(optim or config.optim, parts.model)
    return lr_range_test(
        parts.model,
        parts.task,
        optimizer,
        train_loader,
        device=parts.device,
        precision=Precision(config.trainer.precision, parts.device),
        **settings,
    )
