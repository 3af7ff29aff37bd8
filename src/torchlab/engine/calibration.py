"""Calibration fitted after training on the validation split, and applied wherever a run
predicts.

``task.calibrate: temperature`` fits one temperature for a classifier's logits;
``task.intervals: {coverage: 0.9}`` fits split-conformal half-widths for a regressor's
predictions, and for a forecaster one width per horizon step and target from a
rolling-origin backtest over the validation part. All are stored in the run as
``calibration.json``. The temperature and a forecaster's bands are applied by wrapping the
model (:class:`~torchlab.models.calibrated.Calibrated`,
:class:`~torchlab.models.calibrated.ConformalBands`), so evaluate, predict, serve, the report
and every export graph use them; a regressor's half-widths become ``lower``/``upper`` bounds
of the predictions of the run and of its export folders (whose sidecar carries them).
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
from torchlab.models.calibrated import Calibrated, ConformalBands, uncalibrated
from torchlab.notices import notice
from torchlab.tasks.calibration import (
    calibration_nll,
    conformal_half_widths,
    conformal_quantiles,
    fewest_samples,
    fit_temperature,
    interval_coverage,
    reliability,
)

if TYPE_CHECKING:
    from torchlab.engine.experiment import Experiment
    from torchlab.exporters.sources import Exportable

CALIBRATION_FILE = "calibration.json"
TEMPERATURE_KINDS = ("multiclass", "binary", "multilabel")  # outputs are class logits
INTERVAL_KINDS = ("regression", "forecasting")


def check_calibration(task_config: Any, metric_kind: str) -> None:
    """Refuse calibration settings the task cannot use, before any data is read."""
    name = task_config.name
    if task_config.calibrate != "none" and metric_kind not in TEMPERATURE_KINDS:
        raise ConfigError(
            f"task.calibrate: {task_config.calibrate} calibrates class probabilities, which "
            f"task '{name}' does not predict; remove task.calibrate, or use it with a "
            "classification, binary or multilabel task."
        )
    if task_config.intervals is not None and metric_kind not in INTERVAL_KINDS:
        raise ConfigError(
            f"task.intervals gives prediction intervals of a regression or forecasting task, "
            f"not of task '{name}'; remove task.intervals."
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
    if experiment.task.metric_kind == "forecasting":
        return fit_forecast_intervals(experiment, config.intervals.coverage)
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
    binary = experiment.task.metric_kind != "multiclass"  # independent sigmoid outputs
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


def fit_forecast_intervals(experiment: Experiment, coverage: float) -> Fitted | None:
    """Conformal widths per horizon step and target from the residuals of a rolling-origin
    backtest of the trained model over the validation part (every origin, not the split's
    stride). Residuals are in scaled units (divided by each series' scale), so series of
    different sizes share them; a quantile forecaster's scores are how far the actual fell
    outside its outer quantiles (conformalized quantile regression)."""
    from torchlab.data.series.bundle import rolling_windows

    task = experiment.task
    windows = rolling_windows(experiment.bundle.series, "val")
    outputs, target = outputs_of(experiment.model, task, windows, experiment.device)
    scores = forecast_scores(outputs, target, quantile=outputs.ndim == 4)
    widths = conformal_quantiles(scores.reshape(len(scores), -1).numpy(), coverage)
    if not np.isfinite(widths).all():
        notice(
            f"The validation part has {len(scores)} forecast origins, too few for intervals "
            f"of coverage {coverage} (at least {fewest_samples(coverage)} are needed), so "
            "task.intervals is ignored; enlarge data.source.split.val_size or lower the coverage."
        )
        return None
    widths = torch.from_numpy(widths).float().reshape(scores.shape[1:])  # (H, T)
    record = {
        "forecast_intervals": {
            "coverage": coverage,
            "method": "conformalized quantiles" if outputs.ndim == 4 else "conformal",
            "widths": widths.tolist(),
            "units": "scaled: times each series' target scale",
            "target_names": list(experiment.bundle.spec.target_names),
            "middle": task.middle,  # the quantile output that is the point forecast
            "fitted_on": {"split": "val", "origins": len(scores)},
        }
    }
    model = ConformalBands(experiment.model, widths, task.middle).to(experiment.device)
    return Fitted(record, model.eval())


def forecast_scores(outputs: torch.Tensor, target: torch.Tensor, quantile: bool) -> torch.Tensor:
    """Nonconformity scores (N, H, T): the absolute error of a point forecast, or for
    quantiles how far the actual lies outside the outermost two (negative inside)."""
    if not quantile:
        return (target - outputs).abs()
    levels = outputs.sort(dim=-1).values
    return torch.maximum(levels[..., 0] - target, target - levels[..., -1])


@torch.no_grad()
def outputs_of(
    model: nn.Module, task: Any, dataset: Any, device: torch.device, size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's raw outputs and the targets over a whole window dataset, on the CPU."""
    model.eval()
    outputs, targets = [], []
    for start in range(0, len(dataset), size):
        batch = dataset.__getitems__(list(range(start, min(start + size, len(dataset)))))
        outputs.append(task.evaluation_step(model, batch.to(device)).outputs.float().cpu())
        targets.append(batch.target)
    return torch.cat(outputs), torch.cat(targets)


def target_names(spec: Any, count: int) -> list[str]:
    """The names prediction columns use for the targets (``prediction_<name>``)."""
    return list(spec.target_names) or [str(i) for i in range(count)]


def interval_metrics(fitted: Fitted, experiment: Experiment, loader: Any) -> dict[str, float]:
    """Measured coverage and mean width of the intervals on ``loader`` (the test split)."""
    if "forecast_intervals" in fitted.record:
        return forecast_interval_metrics(fitted.model, experiment, loader)
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


def forecast_interval_metrics(
    model: nn.Module, experiment: Experiment, loader: Any
) -> dict[str, float]:
    """Share of test actuals inside the conformal bands, their mean width in the data's
    units, and for a quantile forecaster the share inside its quantiles as trained."""
    task = experiment.task
    models = {"interval": model}
    if task.quantiles:
        models["quantile"] = uncalibrated(model)
    outcomes = task.interval_outcomes(models, loader, experiment.device)
    shares = gather_objects(outcomes)  # every rank's share of the test windows
    metrics = {
        f"test/{name}_coverage": float(torch.cat([s[name][0] for s in shares]).double().mean())
        for name in models
    }
    metrics["test/interval_width"] = float(torch.cat([s["interval"][1] for s in shares]).mean())
    return metrics


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
    bands = record.get("forecast_intervals") if isinstance(record, dict) else None
    if bands is not None and not valid_bands(bands):
        raise RunError(
            f"'{path}' holds no valid forecast interval widths; the run directory is damaged."
        )
    return record


def valid_bands(bands: Any) -> bool:
    """Whether a forecast intervals record has finite widths, a list per horizon step."""
    try:
        widths = np.asarray(bands["widths"], dtype=float)
    except (TypeError, ValueError, KeyError):
        return False
    middle = bands.get("middle")
    return (
        widths.ndim == 2
        and bool(np.isfinite(widths).all())
        and (middle is None or (isinstance(middle, int) and middle >= 0))
    )


def with_calibration(model: nn.Module, run_dir: Path) -> nn.Module:
    """``model`` with the run's temperature or forecast interval bands applied, when it has
    them."""
    return calibrated(model, read_calibration(run_dir))


def calibrated(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """``model`` with the calibration ``record`` describes, if any."""
    if record.get("temperature") is not None:
        return Calibrated(model, record["temperature"]).eval()
    bands = record.get("forecast_intervals")
    if bands is not None:
        widths = torch.tensor(bands["widths"], dtype=torch.float32)
        return ConformalBands(model, widths, bands.get("middle")).eval()
    return model


def calibrated_exportable(exportable: Exportable, record: dict[str, Any]) -> Exportable:
    """What a calibrated run exports: the model with its temperature or forecast bands in
    the graph (checked against the eager model with them), and the record in the sidecar
    (``calibration``)."""
    if not record:
        return exportable
    description = {**exportable.description, "calibration": record}
    wrapped = calibrated(exportable.model, record)
    if wrapped is exportable.model:  # a regressor's half-widths: applied by the runtime
        return replace(exportable, description=description)
    description["output"] = calibrated_output(description.get("output", {}), record)
    reference = exportable.reference if exportable.reference is not None else exportable.model
    return replace(
        exportable,
        model=wrapped,
        reference=calibrated(reference, record),
        description=description,
    )


def calibrated_output(output: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The sidecar's ``output`` entry of a model exported with its calibration."""
    meaning = output.get("meaning", "outputs")
    if record.get("temperature") is not None:
        return {**output, "meaning": f"{meaning}; already divided by the temperature "
                f"{record['temperature']:.6g}"}  # fmt: skip
    bands = record["forecast_intervals"]
    shape = list(output.get("shape", []))
    if bands.get("middle") is None:  # a point forecaster gains the axis (lower, point, upper)
        shape.append(3)
    return {
        **output,
        "shape": shape,
        "meaning": f"{meaning}; the last axis's first and last entries bound a conformal "
        f"interval of coverage {bands['coverage']}",
    }
