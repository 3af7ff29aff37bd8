"""Whether and where a run is tracked: its config's ``trainer.tracking``, or the environment."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchlab.errors import ConfigError

# MLflow's own default store: `mlflow ui` started in the same folder shows it.
DEFAULT_URI = "sqlite:///mlflow.db"
# Config keys a resumed run may change: where it is tracked is not what it is.
TRACKING_KEYS = {
    "trainer.tracking.mlflow",
    *(f"trainer.tracking.mlflow.{key}" for key in ("uri", "experiment", "register", "log_model")),
}


@dataclass(frozen=True)
class Settings:
    """An MLflow tracking server or store, the experiment, and what to do with the model."""

    uri: str
    experiment: str
    register: str | None = None
    log_model: bool = True


def settings_for(config: Any) -> Settings | None:
    """The tracking a run's config asks for (``trainer.tracking.mlflow``) or the environment
    does (``MLFLOW_TRACKING_URI``); None when neither does."""
    if config.trainer.tracking.mlflow is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return resolve(config)


def resolve(config: Any, uri: str | None = None, experiment: str | None = None) -> Settings:
    """Where a run is tracked: ``uri`` and ``experiment`` when given (``torchlab track
    --uri --experiment``), else its config's, else the environment's, else MLflow's local
    default store and the recipe's name."""
    require_mlflow()
    section = config.trainer.tracking.mlflow
    chosen = uri or (section.uri if section else None) or os.environ.get("MLFLOW_TRACKING_URI")
    name = (
        experiment
        or (section.experiment if section else None)
        or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        or config.name
    )
    register = section.register if section else None
    log_model = section.log_model if section else True
    return Settings(absolute(chosen or DEFAULT_URI), name, register, log_model)


def absolute(uri: str) -> str:
    """A SQLite store's relative path made absolute: the run may be pushed from elsewhere."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).absolute())
    return uri


def require_mlflow() -> None:
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "Tracking in MLflow needs the mlflow package; install it with "
            "pip install 'torchlab[track]', or remove trainer.tracking (and unset "
            "MLFLOW_TRACKING_URI)."
        )
