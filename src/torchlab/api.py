"""The public verbs: train, evaluate, predict, explain, export, forecast, report. The CLI is a thin
layer over these, and nothing inside the package imports this module: each verb hands its
work to the assembly layer, :mod:`torchlab.engine`.

    >>> import torchlab
    >>> run = torchlab.train("digits", overrides={"trainer.max_epochs": 5})
    >>> torchlab.evaluate(run, "test")["test/accuracy"]
    >>> torchlab.export(run, "onnx")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchlab.kinds import TrainRequest
from torchlab.run import Run

if TYPE_CHECKING:  # loaded on first use by __getattr__ below
    from torchlab.engine.batch_predict import batch_predict
    from torchlab.engine.cv import cv
    from torchlab.engine.explain import explain
    from torchlab.engine.export import export
    from torchlab.engine.forecasting import backtest, forecast
    from torchlab.engine.predict import generate_text, predict
    from torchlab.engine.tracking import track

# Verbs the assembly layer defines, imported on first use: a verb loads only what it needs
# (an RL run never imports supervised training, a config error answers before torch loads).
_ENGINE = {
    "backtest": "torchlab.engine.forecasting",
    "batch_predict": "torchlab.engine.batch_predict",
    "cv": "torchlab.engine.cv",
    "explain": "torchlab.engine.explain",
    "export": "torchlab.engine.export",
    "forecast": "torchlab.engine.forecasting",
    "generate_text": "torchlab.engine.predict",
    "predict": "torchlab.engine.predict",
    "track": "torchlab.engine.tracking",
}

__all__ = [
    "backtest",
    "batch_predict",
    "cv",
    "evaluate",
    "explain",
    "export",
    "forecast",
    "generate_text",
    "predict",
    "profile",
    "report",
    "track",
    "train",
]


def train(
    recipe: str | Path | None = None,
    overrides: list[str] | dict[str, Any] = (),
    *,
    resume: str | Path | None = None,
    output_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    trust_code: bool = False,
) -> Run:
    """Train a recipe (or YAML file) and return its completed :class:`Run`.

    A config with an ``agent:`` section trains a reinforcement-learning agent (docs/rl.md).

    Args:
        recipe: A built-in recipe name or a YAML path; optional when resuming.
        overrides: Dotted overrides, ``["optim.lr=1e-3"]`` or ``{"optim.lr": 1e-3}``.
        resume: A run directory to continue from its last checkpoint.
        output_dir: Where new runs go (default: the config's ``output_dir``, ``runs``).
        callbacks: Extra :class:`~torchlab.training.callbacks.Callback` objects (e.g. a
            tuner's pruning hook), called after the config's own callbacks.
        trust_code: Let the resumed run import code it did not record (``--trust-code``).
    """
    from torchlab.engine import verbs

    return verbs.train(TrainRequest(recipe, overrides, resume, output_dir, callbacks, trust_code))


def evaluate(
    run: str | Path | Run,
    split: str = "test",
    *,
    episodes: int | None = None,
    trust_code: bool = False,
) -> dict[str, Any]:
    """Metrics of a run's best weights on one split (``train``, ``val`` or ``test``).

    For an RL run: mean and std of return over ``episodes`` deterministic episodes.
    ``trust_code`` lets the run import code it did not record (``--trust-code``).
    """
    from torchlab.engine import verbs

    return verbs.evaluate(run, split, episodes=episodes, trust_code=trust_code)


def report(run: str | Path | Run, trust_code: bool = False) -> Path:
    """Rebuild ``report.html`` and ``MODEL_CARD.md`` of a completed run; returns the HTML path.

    A supervised run's test split is predicted again by its best weights; an RL run's report
    comes from its files. ``trust_code`` lets the run import code it did not record.
    """
    from torchlab.engine import verbs

    return verbs.report(run, trust_code)


def profile(
    recipe: str | Path,
    overrides: list[str] | dict[str, Any] = (),
    *,
    steps: int = 20,
    output_dir: str | Path | None = None,
) -> Any:
    """Profile ``steps`` training steps of a recipe; the trace goes into a new run folder.

    Returns a :class:`~torchlab.training.profiler.ProfileReport` (``.summary()`` for the
    phase table, ``.top_ops`` for the costliest operators, ``.trace`` for the Chrome trace).
    """
    from torchlab.engine import fit

    return fit.profile(recipe, overrides, steps=steps, output_dir=output_dir)


def __getattr__(name: str) -> Any:
    if name in _ENGINE:
        import importlib

        return getattr(importlib.import_module(_ENGINE[name]), name)
    raise AttributeError(f"module 'torchlab.api' has no attribute '{name}'")
