"""Tuning: Optuna studies over a config's ``tune:`` space, and the learning-rate finder.

>>> from torchlab.tune import tune, lr_find
>>> result = tune("my.yaml", trials=30)          # best recipe: result.best_config
>>> finder = lr_find("digits")                   # finder.suggestion, lr_finder.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchlab.tune.study import OptunaPruning, StudyResult, tune

__all__ = ["OptunaPruning", "StudyResult", "lr_find", "tune"]


def lr_find(
    recipe: str | Path,
    overrides: list[str] | dict[str, Any] = (),
    *,
    output_dir: str | Path = ".",
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
) -> Any:
    """Run the learning-rate range test on a config; write ``lr_finder.png`` / ``.json``.

    Returns the :class:`~torchlab.training.lr_finder.LRFinderResult`; its ``suggestion``
    is what ``optim.lr: auto`` would train with.
    """
    from torchlab.config import load_config
    from torchlab.engine.experiment import build_experiment, loaders
    from torchlab.training.lr_finder import find_lr

    experiment = build_experiment(load_config(recipe, overrides))
    result = find_lr(
        experiment,
        loaders(experiment)["train"],
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
    )
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    result.save(folder)
    return result
