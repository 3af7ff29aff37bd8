"""Small deterministic helpers for testing torchlab and code built on it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from torchlab.training.callbacks import Callback, StepLog


class KillAtStep(Callback):
    """SIGKILL the training process right after optimizer step ``step``, once.

    The first run that reaches the step creates ``marker`` and dies as if the machine had
    lost power; a run started while ``marker`` exists trains on. Used to prove that a
    resumed run ends bit-identical to one that was never interrupted.
    """

    def __init__(self, *, step: int, marker: str) -> None:
        self.step, self.marker = step, Path(marker)

    def on_train_step_end(self, trainer: Any, step: StepLog) -> None:
        if trainer.state.global_step == self.step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


class SaveWeightsPerRank(Callback):
    """At the end of training, every rank writes its own weights to ``folder/rank<r>.safetensors``.

    Shows that data-parallel ranks end with the same weights (rank 0 alone writes the run).
    """

    def __init__(self, *, folder: str) -> None:
        self.folder = Path(folder)

    def on_fit_end(self, trainer: Any) -> None:
        from torchlab.training.checkpoint import save_weights

        save_weights(
            self.folder / f"rank{trainer.world.rank}.safetensors", trainer.model.state_dict()
        )
