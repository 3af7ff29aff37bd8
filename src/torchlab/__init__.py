"""torchlab: a deep-learning workbench on PyTorch, from raw data to a served model.

    >>> import torchlab
    >>> run = torchlab.train("digits", overrides={"trainer.max_epochs": 5})
    >>> run.metrics["test/accuracy"]

Importing torchlab is cheap and has no side effects: torch and friends load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from torchlab.api import (
        backtest,
        batch_predict,
        cv,
        evaluate,
        explain,
        export,
        forecast,
        generate_text,
        predict,
        profile,
        report,
        track,
        train,
    )
    from torchlab.config import RunConfig, load_config
    from torchlab.notices import TorchlabWarning
    from torchlab.run import Run

_LAZY = {
    "train": "torchlab.api",
    "evaluate": "torchlab.api",
    "predict": "torchlab.api",
    "batch_predict": "torchlab.api",
    "profile": "torchlab.api",
    "export": "torchlab.api",
    "explain": "torchlab.api",
    "report": "torchlab.api",
    "backtest": "torchlab.api",
    "cv": "torchlab.api",
    "forecast": "torchlab.api",
    "generate_text": "torchlab.api",
    "track": "torchlab.api",
    "TorchlabWarning": "torchlab.notices",
    "load_config": "torchlab.config",
    "RunConfig": "torchlab.config",
    "Run": "torchlab.run",
}

__all__ = [
    "Run",
    "RunConfig",
    "TorchlabWarning",
    "__version__",
    "backtest",
    "batch_predict",
    "cv",
    "evaluate",
    "explain",
    "export",
    "forecast",
    "generate_text",
    "load_config",
    "predict",
    "profile",
    "report",
    "track",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'torchlab' has no attribute '{name}'")


def __dir__() -> list[str]:
    """The public API, so tab completion shows the verbs before they are imported.

    Tuning and serving are ``torchlab.tune.tune`` and ``torchlab.serve.serve``: their
    subpackages hold those names."""
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
