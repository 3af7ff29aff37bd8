"""The training loop: plain PyTorch a reader can follow top to bottom.

forward -> loss -> backward -> (accumulate) -> clip -> step -> schedule, with callbacks
called at named points. Logging, checkpoints, early stopping and progress are callbacks
(:mod:`torchlab.training.callbacks`). Nothing here knows the problem type: the task turns a
batch into a loss and metric updates.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from torchlab.config import TrainerConfig
from torchlab.data.loaders import Loader
from torchlab.distributed import World, all_reduce_sum, gather_objects
from torchlab.errors import TorchlabError
from torchlab.notices import notice
from torchlab.tasks.base import Task
from torchlab.training.callbacks import Callback, CallbackList, StepLog
from torchlab.training.precision import Precision
from torchlab.training.schedules import Schedule
from torchlab.training.state import rng_state, set_rng_state


class TrainingDiverged(TorchlabError):
    """The loss, the weights or the optimizer state became NaN or infinite."""

    exit_code = 2

    def __init__(self, what: str, state: LoopState) -> None:
        super().__init__(
            f"The {what} became non-finite (NaN or infinite) at step {state.global_step} "
            f"(epoch {state.epoch + 1}); no checkpoint holds it. Start a new run with a lower "
            "optim.lr or with trainer.grad_clip_norm set, or check the data for extreme values."
        )


@dataclass
class LoopState:
    """Where training is: enough, with the states of its collaborators, to resume exactly."""

    epoch: int = 0
    batch_in_epoch: int = 0  # batches of ``epoch`` already trained on
    global_step: int = 0  # optimizer steps taken
    should_stop: bool = False
    world_size: int = 1  # processes that trained; a resume on another count maps the position
    seconds: float = 0.0  # spent in fit() by every segment of the run up to now


class Trainer:
    """Trains ``model`` on ``task`` with the settings of a ``trainer:`` config section."""

    def __init__(
        self,
        config: TrainerConfig,
        *,
        model: nn.Module,
        task: Task,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        train_loader: Loader,
        val_loader: Loader | None,
        device: torch.device,
        callbacks: list[Callback],
        world: World | None = None,
    ) -> None:
        self.config = config
        self.model, self.task, self.optimizer, self.schedule = model, task, optimizer, schedule
        self.train_loader, self.val_loader = train_loader, val_loader
        self.device = device
        self.world = world or World()
        self.precision = Precision(config.precision, device)
        self.callbacks = CallbackList(callbacks)
        self.state = LoopState(world_size=self.world.size)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.net = self.parallel(model)  # what the forward pass runs: the model or its wrapper
        self.eager_net = self.net
        if config.compile:
            self.net = torch.compile(self.net)
        self.memory_format = torch.channels_last if config.channels_last else None
        self._loss_sum = torch.zeros((), device=device)  # stays on device: no sync per step
        self._loss_count = 0
        self._metrics = task.metrics().to(device)
        self._fit_started: float | None = None  # perf_counter() less earlier segments' time

    def parallel(self, model: nn.Module) -> nn.Module:
        """DDP under torchrun; DataParallel when asked for on a multi-GPU machine."""
        if self.world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.config.data_parallel:
            if torch.cuda.device_count() < 2:
                notice(
                    "trainer.data_parallel is ignored: fewer than two GPUs are visible.",
                )
                return model
            return nn.DataParallel(model)
        return model

    @property
    def lr(self) -> float:
        group = self.optimizer.param_groups[0]  # the base rate, whatever the group's scale
        return group["lr"] / group.get("lr_scale", 1.0)

    def fit(self) -> None:
        self._fit_started = time.perf_counter() - self.state.seconds
        self.callbacks.on_fit_start(self)
        while self.state.epoch < self.config.max_epochs and not self.state.should_stop:
            self.callbacks.on_epoch_start(self)
            logs = {"epoch": self.state.epoch, **self.train_epoch(), "lr": self.lr}
            self.callbacks.on_train_epoch_end(self)
            if self.val_loader is not None:
                logs.update(self.evaluate(self.val_loader, "val"))
            self.schedule.after_epoch(logs)
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            logs["step"] = self.state.global_step
            self.callbacks.on_epoch_end(self, logs)
        self.state.seconds = self.seconds()
        self.callbacks.on_fit_end(self)

    def seconds(self) -> float:
        """Training time of the whole run so far, earlier segments of a resumed run included."""
        if self._fit_started is None:
            return self.state.seconds
        return time.perf_counter() - self._fit_started

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        accumulate = self.config.accumulate_grad_batches
        last = len(self.train_loader)
        rows = 0
        for batch in self.train_loader.epoch(self.state.epoch, start=self.state.batch_in_epoch):
            rows += len(batch)
            batch = batch.to(self.device, non_blocking=True, memory_format=self.memory_format)
            loss = self.training_step(batch)
            # Average over the batches of this accumulation group (the last one of an epoch
            # may be short), so N micro-batches give the gradient of one N-times batch.
            group = min(accumulate, last - self.state.batch_in_epoch // accumulate * accumulate)
            self.precision.scaler.scale(loss / group if group > 1 else loss).backward()
            self._loss_sum += loss.detach()
            self._loss_count += 1
            self.state.batch_in_epoch += 1
            if self.state.batch_in_epoch % accumulate == 0 or self.state.batch_in_epoch == last:
                grad_norm = self.optimizer_step()
                self.state.global_step += 1
                self.callbacks.on_train_step_end(self, StepLog(loss.detach(), grad_norm, rows))
                rows = 0
        totals = torch.stack([self._loss_sum, self._loss_sum.new_tensor(float(self._loss_count))])
        loss_sum, count = all_reduce_sum(totals).tolist()  # one sync per epoch, all ranks
        mean_loss = loss_sum / max(1.0, count)
        self._loss_sum.zero_()
        self._loss_count = 0
        if not math.isfinite(mean_loss):
            raise TrainingDiverged("training loss", self.state)
        return {"train/loss": mean_loss}

    def training_step(self, batch: Any) -> torch.Tensor:
        """Forward and loss; a model torch.compile cannot handle falls back to eager once."""
        try:
            with self.precision.autocast():
                return self.task.training_step(self.net, batch).loss
        except Exception as exc:
            if self.net is self.eager_net or not is_compile_error(exc):
                raise
            notice(
                f"torch.compile failed ({type(exc).__name__}: {exc}); training on in "
                "eager mode (set trainer.compile=false to skip the attempt).",
            )
            self.net = self.eager_net
            return self.training_step(batch)

    def optimizer_step(self) -> torch.Tensor | None:
        """Unscale, clip, step and schedule; returns the gradient norm when it was computed."""
        scaler, config = self.precision.scaler, self.config
        log_now = (self.state.global_step + 1) % config.log_every_n_steps == 0
        grad_norm = None
        if config.grad_clip_norm or config.grad_clip_value or log_now:
            scaler.unscale_(self.optimizer)
        if config.grad_clip_value:
            nn.utils.clip_grad_value_(self.params, config.grad_clip_value)
        if config.grad_clip_norm:
            grad_norm = nn.utils.clip_grad_norm_(self.params, config.grad_clip_norm)
        elif log_now:
            grad_norm = nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        scaler.step(self.optimizer)
        scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.after_step()
        return grad_norm

    def evaluate(
        self, loader: Loader, prefix: str, extra_metrics: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Mean loss and the task's metrics (plus ``extra_metrics``) over ``loader``."""
        metrics = (
            self.task.metrics(extra_metrics).to(self.device) if extra_metrics else self._metrics
        )
        return evaluate(
            self.model,
            self.task,
            loader,
            metrics=metrics,
            precision=self.precision,
            device=self.device,
            prefix=prefix,
        )

    # --- resumable state ------------------------------------------------------------------

    def check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` unless weights and optimizer state are all finite.

        Called before each checkpoint, so a diverged run never replaces a good checkpoint
        with a NaN one (one device sync per checkpoint).
        """
        for what, tensors in (
            ("weights", self.model.state_dict().values()),
            ("optimizer state", optimizer_tensors(self.optimizer)),
        ):
            floats = [t for t in tensors if t.is_floating_point() or t.is_complex()]
            if floats and not torch.stack([torch.isfinite(t).all() for t in floats]).all():
                raise TrainingDiverged(what, self.state)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights needed to continue exactly where training is now."""
        return {
            "loop": {**asdict(self.state), "seconds": self.seconds()},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.precision.scaler.state_dict(),
            "train_loss": {"sum": self._loss_sum.detach().cpu(), "count": self._loss_count},
            "callbacks": self.callbacks.state_dict(),
            "rng": gather_objects(rng_state()),  # one per rank
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = LoopState(**state["loop"])
        if self.state.world_size != self.world.size:
            self.state.batch_in_epoch = (
                self.state.batch_in_epoch * self.state.world_size // self.world.size
            )
            notice(
                f"Resuming a run trained on {self.state.world_size} process(es) on "
                f"{self.world.size}: the epoch continues at batch {self.state.batch_in_epoch} and "
                "random streams are reseeded, so the run is no longer bit-identical.",
            )
            self.state.world_size = self.world.size
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.precision.scaler.load_state_dict(state["scaler"])
        self._loss_sum = state["train_loss"]["sum"].to(self.device)
        self._loss_count = state["train_loss"]["count"]
        self.callbacks.load_state_dict(state["callbacks"])
        if len(state["rng"]) == self.world.size:  # last: nothing after it may draw numbers
            set_rng_state(state["rng"][self.world.rank])


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    task: Task,
    loader: Loader,
    *,
    metrics: Any,
    precision: Precision,
    device: torch.device,
    prefix: str,
) -> dict[str, Any]:
    """Mean loss and ``metrics`` over ``loader``, keyed ``prefix/name``; one sync at the end."""
    model.eval()
    metrics.reset()
    loss_sum, count = torch.zeros((), device=device), 0
    for batch in loader.epoch(0):
        batch = batch.to(device, non_blocking=True)
        with precision.autocast():
            out = task.evaluation_step(model, batch)
        loss_sum += out.loss.float() * len(batch)
        count += len(batch)
        task.update_metrics(metrics, out.outputs, batch)
    totals = all_reduce_sum(torch.stack([loss_sum, loss_sum.new_tensor(float(count))]))
    values = {"loss": totals[0] / totals[1].clamp(min=1), **metrics.compute()}  # metrics sync too
    return {f"{prefix}/{name}": as_python(value) for name, value in values.items()}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]


def is_compile_error(exc: Exception) -> bool:
    """Whether ``exc`` came from torch.compile's tracing or code generation."""
    import torch._dynamo.exc as dynamo

    return isinstance(exc, (dynamo.TorchDynamoException, dynamo.BackendCompilerFailed))


def as_python(value: torch.Tensor | float) -> float | list[Any]:
    """A scalar as float, anything larger (a confusion matrix, per-output errors) as a list."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return float(value)
