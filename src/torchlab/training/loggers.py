"""Logging callbacks: metrics as JSON lines, TensorBoard events, and a progress display.

Step-level values are synced from the device only every ``log_every_n_steps`` steps.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchlab.files import storage_errors
from torchlab.training.callbacks import Callback, StepLog

if TYPE_CHECKING:
    from torchlab.training.loop import Trainer


def scalars(logs: dict[str, Any]) -> dict[str, float]:
    return {
        k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _log_step(trainer: Trainer) -> bool:
    return trainer.state.global_step % trainer.config.log_every_n_steps == 0


def step_values(trainer: Trainer, step: StepLog) -> dict[str, float]:
    values = {"train/loss_step": step.loss.item(), "lr": trainer.lr}
    if step.grad_norm is not None:
        values["grad_norm"] = step.grad_norm.item()
    return values


class MetricsLogger(Callback):
    """Append one JSON object per epoch (and per logged step) to ``metrics.jsonl``.

    Its state is the file's length at checkpoint time: a resumed run cuts off lines
    written after that checkpoint (all of them when it resumes from none), so the file
    ends as if training never stopped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kept = 0  # bytes of the file that training up to now wrote

    def _write(self, record: dict[str, Any]) -> None:
        with storage_errors(self.path), self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def on_fit_start(self, trainer: Trainer) -> None:
        self._cut_to_kept()

    def _cut_to_kept(self) -> None:
        if self.path.exists():
            with self.path.open("r+") as f:
                f.truncate(self.kept)

    def on_train_step_end(self, trainer: Trainer, step: StepLog) -> None:
        if _log_step(trainer):
            self._write(
                {
                    "step": trainer.state.global_step,
                    "epoch": trainer.state.epoch,
                    **step_values(trainer, step),
                }
            )

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self._write(scalars(logs))

    def state_dict(self) -> dict[str, Any]:
        return {"bytes": self.path.stat().st_size if self.path.exists() else 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = state.get("bytes", 0)
        self._cut_to_kept()


class TensorBoardLogger(Callback):
    """Losses, metrics, learning rate and gradient norm as TensorBoard event files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy: import only when training

        # purge_step drops events a killed run wrote after its last checkpoint. Killed before
        # its first, nothing of it is kept: its event files go, as its metrics lines do
        # (TensorBoard orders event files by name, whose time has whole seconds only, so a
        # purge from step 0 could be read before the events it is meant to drop).
        purge = trainer.state.global_step if self.folder.exists() else None
        if purge == 0:
            for events in self.folder.glob("events.out.tfevents.*"):
                events.unlink()
            purge = None
        self.writer = SummaryWriter(str(self.folder), purge_step=purge)

    def on_train_step_end(self, trainer: Trainer, step: StepLog) -> None:
        if _log_step(trainer):
            for key, value in step_values(trainer, step).items():
                self.writer.add_scalar(key, value, trainer.state.global_step)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        for key, value in scalars(logs).items():
            if key not in ("epoch", "step"):
                self.writer.add_scalar(key, value, trainer.state.global_step)
        with storage_errors(self.folder):  # the writer's thread reports its failures here
            self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.writer.close()


class ProgressBar(Callback):
    """A rich progress bar with live loss, samples per second and ETA on a terminal, plain
    lines elsewhere; each epoch ends with a line of its metrics, time and samples per second."""

    def __init__(self, mode: str = "auto") -> None:
        self.rich = mode == "rich" or (mode == "auto" and sys.stdout.isatty())
        self.progress: Any = None
        self.task_id: Any = None
        self.started = 0.0
        self.rows = 0  # samples trained on this epoch (since a resume, in a resumed one)
        self.trained = 0.0  # when this epoch's training ended (validation not counted)

    def rate(self) -> str:
        """Training samples per second this epoch."""
        seconds = (self.trained or time.perf_counter()) - self.started
        return f"{self.rows / seconds:,.0f} samples/s" if seconds > 0 and self.rows else "-"

    def on_train_epoch_end(self, trainer: Trainer) -> None:
        self.trained = time.perf_counter()

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.rich:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self.progress.start()

    def on_epoch_start(self, trainer: Trainer) -> None:
        self.started, self.rows, self.trained = time.perf_counter(), 0, 0.0
        if self.progress is not None:
            epoch = f"{trainer.state.epoch + 1}/{trainer.config.max_epochs}"
            total = len(trainer.train_loader)
            self.task_id = self.progress.add_task(
                "train", total=total, epoch=epoch, loss="-", rate="-"
            )
            self.progress.update(self.task_id, completed=trainer.state.batch_in_epoch)

    def on_train_step_end(self, trainer: Trainer, step: StepLog) -> None:
        self.rows += step.rows
        if self.progress is None:
            return
        fields = (
            {"loss": f"{step.loss.item():.4f}", "rate": self.rate()} if _log_step(trainer) else {}
        )
        self.progress.update(self.task_id, completed=trainer.state.batch_in_epoch, **fields)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in scalars(logs).items() if "/" in k)
        took = f"{time.perf_counter() - self.started:.1f} s, trained at {self.rate()}"
        line = f"epoch {trainer.state.epoch}/{trainer.config.max_epochs}  {shown}  ({took})"
        if self.progress is not None:
            self.progress.update(
                self.task_id, completed=len(trainer.train_loader), loss=f"{logs['train/loss']:.4f}"
            )
            self.progress.console.print(line)
            self.progress.remove_task(self.task_id)
        else:
            print(line, flush=True)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.progress is not None:
            self.progress.stop()
