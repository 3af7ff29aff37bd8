"""Runs tracked in MLflow: the session around training, and ``torchlab track RUN_DIR``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torchlab.errors import ExportError, RunError, TorchlabError
from torchlab.notices import notice
from torchlab.run import Run
from torchlab.tracking import resolve
from torchlab.tracking.session import tracked as tracking_session

# Tried in order for the run's MLflow model: the first format that holds the model wins.
MODEL_FORMATS = ("onnx", "exported-program")


@contextmanager
def tracked(run: Run, config: Any, main: bool) -> Iterator[list[Any]]:
    """Track a supervised run in MLflow when asked, its model included (see
    :func:`torchlab.tracking.session.tracked`)."""
    with tracking_session(run.dir, config, main, export_for_tracking) as callbacks:
        yield callbacks


# What a forecaster's MLflow model holds of its run: an export takes windows, while the
# model forecasts from a history as the server does, which needs the run's own files.
FORECASTER_FILES = ("run.json", "config.yaml", "spec.json", "featurizer.json",
                    "model.safetensors", "calibration.json")  # fmt: skip


def export_for_tracking(run_dir: Path) -> Path:
    """The run's export folder for its MLflow model: one already made, else a new one in
    the first of :data:`MODEL_FORMATS` that holds the model; a forecaster's run files."""
    from torchlab.engine.export import default_output, export
    from torchlab.exporters.runtime import is_export_dir

    if Run(run_dir).featurizer.kind == "series":
        return forecaster_files(run_dir)

    problems = []
    for format in MODEL_FORMATS:
        folder = default_output(run_dir, format, None)
        if is_export_dir(folder):
            return folder
        try:
            return export(run_dir, format)
        except ExportError as exc:
            problems.append(str(exc))
    raise ExportError(" ".join(problems))


def forecaster_files(run_dir: Path) -> Path:
    """A copy of what a forecasting run predicts from, in ``exports/mlflow-forecaster``."""
    import shutil

    folder = Path(run_dir) / "exports" / "mlflow-forecaster"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FORECASTER_FILES:
        if (Path(run_dir) / name).is_file():
            shutil.copy2(Path(run_dir) / name, folder / name)
    return folder


def track(
    run: str | Path | Run,
    *,
    uri: str | None = None,
    experiment: str | None = None,
) -> str:
    """Push a run folder to MLflow: what the server lacks of its params, metrics, tags,
    files and model (``torchlab track``). Returns the MLflow run id.

    Args:
        run: A run directory or :class:`~torchlab.run.Run`.
        uri: The tracking server or store (default: the run's ``trainer.tracking.mlflow.uri``,
            else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here).
        experiment: The MLflow experiment (default: the run's, else its recipe's name).
    """
    from torchlab.tracking.store import sync

    run = run if isinstance(run, Run) else Run(run)
    settings = resolve(run.config, uri, experiment)
    if run.status == "running":
        notice(f"Run '{run.dir}' is still training (or was killed); pushing what it has so far.")
    try:
        return sync(run.dir, settings, export_for_tracking)
    except TorchlabError:
        raise
    except Exception as exc:  # the server's or the network's failure, in its own words
        problem = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise RunError(
            f"MLflow at {settings.uri} did not take run '{run.dir}' ({problem}); check that "
            "the server is up and the URI right, then run torchlab track again."
        ) from None
