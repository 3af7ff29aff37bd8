"""Callbacks: typed hooks the loop calls at named points, each with its own resumable state.

A callback stops training by setting ``trainer.state.should_stop``. Order matters only
in one place: loggers run before the checkpointer so a checkpoint covers what was logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from torchlab.distributed import barrier
from torchlab.registry import CALLBACKS
from torchlab.training.checkpoint import prune, save_checkpoint, save_weights

if TYPE_CHECKING:
    from torchlab.training.loop import Trainer


@dataclass(frozen=True)
class StepLog:
    """What one optimizer step produced; tensors stay on the device until someone logs them."""

    loss: torch.Tensor
    grad_norm: torch.Tensor | None
    rows: int = 0  # samples in the batches of this step (several under gradient accumulation)


class Callback:
    """Base class: override the hooks you need; keep resumable state in ``state_dict``."""

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer) -> None: ...
    def on_train_step_end(self, trainer: Trainer, step: StepLog) -> None: ...
    def on_train_epoch_end(self, trainer: Trainer) -> None: ...
    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CallbackList:
    """Calls each hook on every callback in order."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks

    def on_fit_start(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_fit_start(trainer)

    def on_epoch_start(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(trainer)

    def on_train_step_end(self, trainer: Trainer, step: StepLog) -> None:
        for cb in self.callbacks:
            cb.on_train_step_end(trainer, step)

    def on_train_epoch_end(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_train_epoch_end(trainer)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(trainer, logs)

    def on_fit_end(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_fit_end(trainer)

    def _keys(self) -> list[str]:
        """``EarlyStopping``, ``EMA``, ``EMA#2``...: stable when ranks hold different lists
        (only rank 0 has loggers), so every rank finds its callbacks' state on resume."""
        seen: dict[str, int] = {}
        keys = []
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
        return keys

    def state_dict(self) -> dict[str, Any]:
        return {key: cb.state_dict() for key, cb in zip(self._keys(), self.callbacks, strict=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, cb in zip(self._keys(), self.callbacks, strict=True):
            cb.load_state_dict(state.get(key, {}))


class Monitor:
    """Tracks the best value of one logged metric.

    With ``tie_break`` (a metric where lower is better, e.g. ``val/loss``), an epoch that
    equals the best value but has a lower ``tie_break`` counts as better: of two epochs with
    the same validation accuracy, the one with the lower validation loss is kept.
    """

    def __init__(
        self,
        monitor: str,
        mode: Literal["min", "max"],
        min_delta: float = 0.0,
        tie_break: str | None = None,
    ) -> None:
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.tie_break = tie_break
        self.best = math.inf if mode == "min" else -math.inf
        self.best_tie = math.inf

    def improved(self, logs: dict[str, Any]) -> bool:
        value = logs.get(self.monitor)
        if value is None:
            from torchlab.errors import ConfigError

            raise ConfigError(
                f"trainer.monitor '{self.monitor}' is not among the logged metrics "
                f"({', '.join(k for k in logs if '/' in k)}); pick one of those."
            )
        tie = logs.get(self.tie_break, math.inf) if self.tie_break else math.inf
        better = (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        ) or (value == self.best and tie < self.best_tie)
        if better:
            self.best, self.best_tie = value, tie
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_tie": self.best_tie}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best", self.best)
        self.best_tie = state.get("best_tie", math.inf)


@CALLBACKS.register("early_stopping")
class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(
        self,
        *,
        monitor: str = "val/loss",
        mode: Literal["min", "max"] = "min",
        patience: int = 10,
        min_delta: float = 0.0,
    ) -> None:
        self.tracker = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.wait = 0

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self.wait = 0 if self.tracker.improved(logs) else self.wait + 1
        if self.wait >= self.patience:
            trainer.state.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.tracker.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.best = state.get("best", self.tracker.best)
        self.wait = state.get("wait", 0)


class BestWeights(Callback):
    """Save the weights of the best epoch (by ``monitor``) to ``path``, atomically."""

    def __init__(self, path: Path, monitor: str, mode: Literal["min", "max"]) -> None:
        self.path = path
        # Ties (equal accuracy in two epochs, common on small data) go to the lower loss.
        tie_break = "val/loss" if monitor.startswith("val/") and monitor != "val/loss" else None
        self.tracker = Monitor(monitor, mode, tie_break=tie_break)
        self.best_epoch = -1

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self.tracker.improved(logs):
            self.best_epoch = logs["epoch"]
            trainer.check_finite()
            if trainer.world.is_main:
                save_weights(self.path, trainer.model.state_dict())
            barrier()  # no rank reads the file before it is whole

    def state_dict(self) -> dict[str, Any]:
        return {**self.tracker.state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state)
        self.best_epoch = state.get("best_epoch", -1)


class Checkpointer(Callback):
    """Write a resumable checkpoint after every epoch and, optionally, every N steps."""

    def __init__(self, folder: Path, every_n_steps: int | None, keep: int) -> None:
        self.folder, self.every_n_steps, self.keep = folder, every_n_steps, keep

    def on_train_step_end(self, trainer: Trainer, step: StepLog) -> None:
        if self.every_n_steps and trainer.state.global_step % self.every_n_steps == 0:
            self.save(trainer)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        trainer.check_finite()  # every kept checkpoint is one a resume can train on from
        name = f"step-{trainer.state.global_step:09d}-e{trainer.state.epoch:04d}b{trainer.state.batch_in_epoch:06d}"
        state = trainer.state_dict()  # a collective: every rank takes part
        if trainer.world.is_main:
            save_checkpoint(self.folder, name, trainer.model.state_dict(), state)
            prune(self.folder, self.keep)
        barrier()
