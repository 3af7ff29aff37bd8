"""What a forecasting run exports: its forecaster on named window inputs, and how to fill them.

The artefact takes ``past`` ``(B, lookback, past_width)`` and, when the run has known-future
inputs, ``future`` ``(B, horizon, future_width)``, both in scaled units; it returns the
forecast in scaled target units. The sidecar names every column, and keeps each series'
scalers, so a user can build inputs from raw values and turn outputs back into them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchlab.data.series.windows import calendar_columns
from torchlab.exporters.adapters import forecast_adapter
from torchlab.exporters.inputs import WindowKind
from torchlab.exporters.sources import Exportable
from torchlab.run import Run

if TYPE_CHECKING:
    from torch import nn

STEPS = (
    "per series, take the last 'lookback' steps; build 'past' per step as its columns say "
    "(targets, lagged targets, past covariates, known-future covariates, calendar) and "
    "'future' per horizon step (known-future covariates, calendar, lagged targets); scale "
    "targets with that series' 'target' scaler ((x - loc) / scale) and covariates with its "
    "'past' / 'future' scalers; float32. Outputs are scaled targets: unscale each target "
    "with y * scale + loc of the 'target' scaler"
)


def columns(layout: dict[str, Any], featurizer: Any) -> dict[str, list[str]]:
    """The column names of ``past`` and ``future`` in the order of the series layout."""
    targets = list(featurizer.target_names)
    lags, horizon = list(layout["lags"]), layout["horizon"]
    calendar = calendar_columns(featurizer.freq) if layout["calendar"] else []
    lagged = [f"{t}_lag{k}" for k in lags for t in targets]
    future_lagged = [f"{t}_lag{k}" for k in lags if k >= horizon for t in targets]
    return {
        "past": [*targets, *lagged, *featurizer.past_names, *featurizer.future_names, *calendar],
        "future": [*featurizer.future_names, *calendar, *future_lagged],
    }


def quantile_levels(task: dict[str, Any]) -> list[float] | None:
    """The quantile levels of a ``quantile`` loss (the forecast's last axis), else None."""
    loss = task.get("loss") or {}
    if isinstance(loss, dict) and loss.get("name") == "quantile":
        return list(loss.get("quantiles") or [0.1, 0.5, 0.9])
    return None


def forecast_exportable(run: Run, model: nn.Module) -> Exportable:
    """A run's trained forecaster (``model``) with positional window inputs, and its sidecar
    description."""
    spec, featurizer, config = run.spec, run.featurizer, run.config
    lookback, past_width = spec.input_shape
    with_future = spec.future_width > 0
    names = ("past", "future") if with_future else ("past",)
    shapes = ((lookback, past_width), (spec.horizon, spec.future_width))[: len(names)]
    named = columns(featurizer.layout, featurizer)
    kind = WindowKind(
        "series", {0: "batch"}, names=names, shapes=shapes,
        columns={name: named[name] for name in names},
    )  # fmt: skip
    task = config.task.model_dump(mode="json")
    levels = quantile_levels(task)
    targets = list(featurizer.target_names)
    shape: list[Any] = ["batch", spec.horizon, len(targets)] + ([len(levels)] if levels else [])
    description = {
        "model": config.model.model_dump(mode="json"),
        "task": task,
        "forecasting": {
            "lookback": lookback,
            "horizon": spec.horizon,
            "frequency": featurizer.freq,
            "target_names": targets,
            "quantiles": levels,
            "inputs": {name: named[name] for name in names},
            "scalers": {tail.id: tail.scalers for tail in featurizer.tails},
        },
        "output": {
            "shape": shape,
            "meaning": "forecasts in scaled target units, per horizon step and target"
            + (", one per quantile level in 'quantiles' order" if levels else "")
            + "; unscale with each series' target scaler",
        },
        "target_names": targets,
        "preprocessing": featurizer.to_dict(),
        "preprocessing_steps": STEPS,
        "predict": "torchlab predict and serve forecast from the run directory "
        "('torchlab predict RUN_DIR --horizon N'), not from this export",
    }
    return Exportable(
        forecast_adapter(model, with_future), kind, (lookback, past_width), description
    )
