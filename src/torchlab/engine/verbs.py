"""The verbs of :mod:`torchlab.api`, each handed to the kind of run it concerns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from torchlab.config import read_recipe
from torchlab.kinds import RunKind, TrainRequest, kind_of, kind_of_config
from torchlab.memory import keep_freed_memory
from torchlab.run import Run


def kind_to_train(recipe: str | Path | None, resume: str | Path | None) -> RunKind:
    """The kind of the recipe, or of the run being resumed (read from its config.yaml)."""
    if resume is not None:
        path = Path(resume) / "config.yaml"
        try:
            raw = yaml.safe_load(path.read_text()) if path.is_file() else None
        except (yaml.YAMLError, UnicodeDecodeError):
            raw = None  # Run() says that the folder is damaged, in one line
        return kind_of(raw)
    return kind_of(read_recipe(recipe) if recipe is not None else None)


def train(request: TrainRequest) -> Run:
    keep_freed_memory()
    return kind_to_train(request.recipe, request.resume).train(request)


def as_run(run: str | Path | Run, trust_code: bool = False) -> Run:
    return run if isinstance(run, Run) else Run(run, trust_code=trust_code)


def evaluate(
    run: str | Path | Run,
    split: str = "test",
    *,
    episodes: int | None = None,
    trust_code: bool = False,
) -> dict[str, Any]:
    keep_freed_memory()
    run = as_run(run, trust_code)
    return kind_of_config(run.config).evaluate(run, split, episodes)


def report(run_dir: str | Path | Run, trust_code: bool = False) -> Path:
    """Rebuild ``report.html`` and ``MODEL_CARD.md`` of a completed run; returns the HTML path."""
    run = as_run(run_dir, trust_code)
    _ = run.summary  # raises a clear error for a run that did not complete
    return kind_of_config(run.config).write_report(run)
