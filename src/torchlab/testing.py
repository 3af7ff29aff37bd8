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


class FailAtStep(Callback):
    """Raise a :class:`~torchlab.errors.DataError` on rank ``rank`` after optimizer step ``step``.

    Stands for any error one rank of a ``torchrun`` job meets alone (a corrupt file in its
    shard, say), to show how the job reports it.
    """

    def __init__(self, *, step: int, rank: int = 0) -> None:
        self.step, self.rank = step, rank

    def on_train_step_end(self, trainer: Any, step: StepLog) -> None:
        if trainer.world.rank == self.rank and trainer.state.global_step == self.step:
            from torchlab.errors import DataError

            raise DataError(f"FailAtStep: rank {self.rank} stops at step {self.step} on purpose.")


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


def shapes_smoke(recipe: str, root: str | Path) -> dict[str, Any]:
    """Overrides that train ``shapes-seg`` or ``shapes-det`` for one short epoch in seconds:
    16 generated scenes written under ``root/shapes`` (32 px for segmentation, 64 px for
    detection, the detector held at that size; a 5-tree forest baseline for segmentation),
    batches of 4, no progress bar."""
    overrides: dict[str, Any] = {
        "data.source.n": 16,
        "data.source.root": str(Path(root) / "shapes"),
        "data.batch_size": 4,
        "trainer.max_epochs": 1,
        "trainer.progress": "none",
    }
    if recipe == "shapes-det":
        detector = {"model.min_size": 64, "model.max_size": 64}
        return {**overrides, "data.source.image_size": 64, **detector}
    return {**overrides, "data.source.image_size": 32, "baseline.n_estimators": 5}


# One config mistake each, as `torchlab train` arguments, and the files they name (written
# into the working folder first): tests/test_precheck.py and benchmarks/startup.py run them.
MISTAKE_FILES = {
    "missing-data.yaml": (
        "data: {source: {name: csv, path: no-such-file.csv, target: label}}\n"
        "model: mlp\ntask: classification\n"
    ),
    "broken.yaml": "data:\n  source: iris\nmodel: {name: mlp\n",
    "extends-missing.yaml": "extends: no-such-recipe\nmodel: mlp\n",
}
CONFIG_MISTAKES = {
    "unknown section key": ["digits", "trainer.max_epoch=3"],
    "unknown model name": ["digits", "model.name=mpl"],
    "unknown optimizer key": ["digits", "optim.lrr=0.1"],
    "unknown model key": ["iris", "model.hiden=3"],
    "bad value type": ["iris", "model.hidden=abc"],
    "missing data file": ["missing-data.yaml"],
    "YAML syntax error": ["broken.yaml"],
    "extends a missing recipe": ["extends-missing.yaml"],
}
