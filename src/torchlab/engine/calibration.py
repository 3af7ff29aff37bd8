"""Calibration fitted after training on the validation split, and applied wherever a run
predicts.

``task.calibrate: temperature`` fits one temperature for a classifier's logits;
``task.intervals: {coverage: 0.9}`` fits split-conformal half-widths for a regressor's
predictions. Both are stored in the run as ``calibration.json``. The temperature is applied
by wrapping the model (:class:`~torchlab.models.calibrated.Calibrated`), so evaluate, predict,
serve, the report and every export graph use it; the half-widths become ``lower``/``upper``
bounds of the predictions of the run and of its export folders (whose sidecar carries them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from torchlab.distributed import gather_objects
from torchlab.errors import ConfigError, RunError
from torchlab.models.calibrated import Calibrated
from torchlab.notices import notice
from torchlab.tasks.calibration import (
    calibration_nll,
    conformal_half_widths,
    fewest_samples,
    fit_temperature,
    interval_coverage,
    reliability,
)

if TYPE_CHECKING:
    from torchlab.engine.experiment import Experiment
    from torchlab.exporters.sources import Exportable

CALIBRATION_FILE = "calibration.json"
TEMPERATURE_KINDS = ("multiclass", "binary")  # tasks whose outputs are class logits


def check_calibration(task_config: Any, metric_kind: str) -> None:
    """Refuse calibration settings the task cannot use, before any data is read."""
    name = task_config.name
    if task_config.calibrate != "none" and metric_kind not in TEMPERATURE_KINDS:
        raise ConfigError(
            f"task.calibrate: {task_config.calibrate} calibrates class probabilities, which "
            f"task '{name}' does not predict; remove task.calibrate, or use it with a "
            "classification or binary task."
        )
    if task_config.intervals is not None and metric_kind != "regression":
        raise ConfigError(
            f"task.intervals gives prediction intervals of a regression task, not of task "
            f"'{name}'; remove task.intervals."
        )


@dataclass(frozen=True)
class Fitted:
    """A calibration fitted at the end of training.

    Attributes:
        record: What ``calibration.json`` (and summary.json's ``calibration``) holds.
        model: The model predictions come from: temperature-scaled, or the model itself.
    """

    record: dict[str, Any]
    model: nn.Module


def fit_calibration(experiment: Experiment, data: dict[str, Any]) -> Fitted | None:
    """Fit what ``task.calibrate`` and ``task.intervals`` ask for on the validation split,
    with the best weights loaded; None when they ask for nothing or there is no split."""
    config = experiment.config.task
    if config.calibrate == "none" and config.intervals is None:
        return None
    if "val" not in data:
        notice(
            "There is no validation split to calibrate on, so task.calibrate and "
            "task.intervals are ignored; set data.split.val above 0."
        )
        return None
    outputs, target = split_outputs(
        experiment.model, experiment.task, data["val"], experiment.device
    )
    if config.calibrate == "temperature":
        return temperature_fitted(experiment, outputs, target)
    return fit_intervals(experiment, config.intervals.coverage, outputs, target)


@torch.no_grad()
def split_outputs(
    model: nn.Module, task: Any, loader: Any, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's raw outputs and the targets over a split (every rank's share), on the CPU."""
    model.eval()
    outputs, targets = [], []
    for batch in loader.epoch(0):
        batch = batch.to(device)
        outputs.append(task.evaluation_step(model, batch).outputs.float().cpu())
        targets.append(batch.target.cpu())
    shares = gather_objects((torch.cat(outputs), torch.cat(targets)))
    return torch.cat([s[0] for s in shares]), torch.cat([s[1] for s in shares])


def temperature_fitted(
    experiment: Experiment, logits: torch.Tensor, target: torch.Tensor
) -> Fitted:
    """The temperature minimising the validation NLL, and what it changed there."""
    binary = experiment.task.metric_kind == "binary"
    temperature = fit_temperature(logits, target, binary)
    scores, labels = experiment.task.scores, target.long().numpy()
    before, after = (scores(logits.double() / t).numpy() for t in (1.0, temperature))
    record = {
        "temperature": temperature,
        "fitted_on": {"split": "val", "samples": len(target)},
        "val": {
            "nll_before": calibration_nll(logits, target, binary, 1.0),
            "nll_after": calibration_nll(logits, target, binary, temperature),
            "ece_before": reliability(before, labels).ece,
            "ece_after": reliability(after, labels).ece,
        },
    }
    model = Calibrated(experiment.model, temperature).to(experiment.device)
    return Fitted(record, model.eval())


def fit_intervals(
    experiment: Experiment, coverage: float, predictions: torch.Tensor, target: torch.Tensor
) -> Fitted | None:
    """Split-conformal half-widths per target from the validation residuals."""
    residuals = (target.double().reshape(len(target), -1) - predictions.double()).abs().numpy()
    half_widths = conformal_half_widths(residuals, coverage)
    if not np.isfinite(half_widths).all():
        notice(
            f"The validation split has {len(residuals)} samples, too few for intervals of "
            f"coverage {coverage} (at least {fewest_samples(coverage)} are needed), so "
            "task.intervals is ignored; enlarge data.split.val or lower the coverage."
        )
        return None
    names = target_names(experiment.bundle.spec, len(half_widths))
    record = {
        "intervals": {
            "coverage": coverage,
            "half_widths": dict(zip(names, map(float, half_widths), strict=True)),
            "fitted_on": {"split": "val", "samples": len(residuals)},
        }
    }
    return Fitted(record, experiment.model)


def target_names(spec: Any, count: int) -> list[str]:
    """The names prediction columns use for the targets (``prediction_<name>``)."""
    return list(spec.target_names) or [str(i) for i in range(count)]


def interval_metrics(fitted: Fitted, experiment: Experiment, loader: Any) -> dict[str, float]:
    """Measured coverage and mean width of the intervals on ``loader`` (the test split)."""
    intervals = fitted.record.get("intervals")
    if intervals is None:
        return {}
    predictions, target = split_outputs(fitted.model, experiment.task, loader, experiment.device)
    half_widths = np.array(list(intervals["half_widths"].values()))
    covered = interval_coverage(predictions.numpy(), target.numpy(), half_widths)
    return {
        "test/interval_coverage": float(covered.mean()),
        "test/interval_width": float(2 * half_widths.mean()),
    }


# --- applying a stored calibration ---------------------------------------------------------


def read_calibration(run_dir: Path) -> dict[str, Any]:
    """The run's ``calibration.json``; empty when it has none. A damaged one is refused, so
    a run never predicts uncalibrated by accident."""
    from torchlab.run import read_json

    path = run_dir / CALIBRATION_FILE
    if not path.is_file():
        return {}
    record = read_json(path)
    temperature = record.get("temperature") if isinstance(record, dict) else None
    if temperature is not None and not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise RunError(f"'{path}' holds no valid temperature; the run directory is damaged.")
    return record


def with_calibration(model: nn.Module, run_dir: Path) -> nn.Module:
    """``model`` with the run's temperature applied, when it has one."""
    temperature = read_calibration(run_dir).get("temperature")
    if temperature is None:
        return model
    return Calibrated(model, temperature).eval()


def calibrated_exportable(exportable: Exportable, record: dict[str, Any]) -> Exportable:
    """What a calibrated run exports: the model with its temperature in the graph (checked
    against the eager model with it), and the record in the sidecar (``calibration``)."""
    if not record:
        return exportable
    description = {**exportable.description, "calibration": record}
    temperature = record.get("temperature")
    if temperature is None:
        return replace(exportable, description=description)
    output = description.get("output", {})
    meaning = (
        f"{output.get('meaning', 'outputs')}; already divided by the temperature {temperature:.6g}"
    )
    description["output"] = {**output, "meaning": meaning}
    reference = exportable.reference if exportable.reference is not None else exportable.model
    return replace(
        exportable,
        model=Calibrated(exportable.model, temperature).eval(),
        reference=Calibrated(reference, temperature).eval(),
        description=description,
    )
