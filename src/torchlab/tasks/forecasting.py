"""Forecasting: multi-step forecasts of one or many series, scored in the data's own units.

Windows carry the scaling of their series (``loc``, ``scale``) and its MASE scale, so the
metrics invert scaling exactly and score every series in its own units. With the
``quantile`` (pinball) loss the model forecasts several quantiles: the middle one is the
point forecast and the outer two bound the prediction interval.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from torchlab.data.base import Batch, DataSpec
from torchlab.errors import ConfigError
from torchlab.registry import LOSSES, TASKS
from torchlab.tasks.base import Deployment, StepOutput, Task


class QuantileLoss(nn.Module):
    """Pinball loss averaged over quantiles, steps and targets.

    For quantile q and error e = y - f: max(q e, (q - 1) e); its minimiser is the q-quantile
    (Koenker & Bassett 1978, https://doi.org/10.2307/1913643). With ``point: mse`` the middle
    output is trained with the squared error instead, so it forecasts the mean (the point
    forecast) while the other outputs bound the interval.
    """

    def __init__(self, quantiles: list[float], point: str = "pinball") -> None:
        super().__init__()
        self.quantiles = list(quantiles)
        self.middle = quantiles.index(0.5) if 0.5 in quantiles else len(quantiles) // 2
        self.point = point
        self.register_buffer("q", torch.tensor(quantiles, dtype=torch.float32))

    def forward(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if forecast.ndim == target.ndim:  # a single quantile: (B, H, T)
            forecast = forecast.unsqueeze(-1)
        error = target.unsqueeze(-1) - forecast  # (B, H, T, Q)
        pinball = torch.maximum(self.q * error, (self.q - 1) * error)
        if self.point != "mse":
            return pinball.mean()
        others = [i for i in range(len(self.quantiles)) if i != self.middle]
        squared = error[..., self.middle].pow(2).mean()
        return squared + (pinball[..., others].mean() if others else 0.0)


@LOSSES.register("quantile")
def quantile(
    *,
    quantiles: list[float] = [0.1, 0.5, 0.9],  # noqa: B006
    point: Literal["pinball", "mse"] = "pinball",
) -> nn.Module:
    """Pinball loss for quantile forecasts; the outer quantiles bound the prediction interval.

    Args:
        quantiles: Increasing levels in (0, 1), e.g. [0.1, 0.5, 0.9] for an 80% interval.
        point: How the middle output is trained: ``pinball`` (a median forecast) or ``mse``
            (a mean forecast, as with ``loss: mse``, beside the interval).
    """
    if (
        not quantiles
        or any(not 0 < q < 1 for q in quantiles)
        or sorted(set(quantiles)) != quantiles
    ):
        raise ConfigError(
            f"task.loss.quantiles must be increasing levels between 0 and 1, e.g. [0.1, 0.5, 0.9]; "
            f"received {quantiles}."
        )
    return QuantileLoss(quantiles, point)


@LOSSES.register("mae")
def mae_loss() -> nn.Module:
    """Mean absolute error: forecasts the median rather than the mean."""
    return nn.L1Loss()


class ForecastMetric(Metric):
    """A mean of per-point values in original units (sums stay on the device)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def values(self, f: torch.Tensor, y: torch.Tensor, mase: torch.Tensor, lower: torch.Tensor,
               upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Per-point values and which points count."""
        raise NotImplementedError

    def update(self, f: torch.Tensor, y: torch.Tensor, mase: torch.Tensor, lower: torch.Tensor,
               upper: torch.Tensor) -> None:  # fmt: skip
        value, counted = self.values(f.double(), y.double(), mase.double(), lower, upper)
        self.total += torch.where(counted, value, 0.0).sum()
        self.count += counted.sum()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class MAE(ForecastMetric):
    def values(self, f, y, mase, lower, upper):  # type: ignore[no-untyped-def]
        return (f - y).abs(), torch.ones_like(y, dtype=torch.bool)


class RMSE(ForecastMetric):
    def values(self, f, y, mase, lower, upper):  # type: ignore[no-untyped-def]
        return (f - y) ** 2, torch.ones_like(y, dtype=torch.bool)

    def compute(self) -> torch.Tensor:
        return super().compute().sqrt()


class MAPE(ForecastMetric):
    """Mean absolute percentage error, in percent; points where the actual is 0 are skipped."""

    def values(self, f, y, mase, lower, upper):  # type: ignore[no-untyped-def]
        nonzero = y != 0
        return 100 * (f - y).abs() / torch.where(nonzero, y.abs(), 1.0), nonzero


class SMAPE(ForecastMetric):
    """Symmetric MAPE in percent, 200 |f - y| / (|y| + |f|) (M4 competition); 0/0 counts 0."""

    def values(self, f, y, mase, lower, upper):  # type: ignore[no-untyped-def]
        denominator = y.abs() + f.abs()
        value = 200 * (f - y).abs() / torch.where(denominator > 0, denominator, 1.0)
        return value, torch.ones_like(y, dtype=torch.bool)


class MASE(ForecastMetric):
    """Mean absolute scaled error: |f - y| over the series' in-sample seasonal-naive MAE.

    Hyndman & Koehler (2006), https://doi.org/10.1016/j.ijforecast.2006.03.001. Below 1
    beats the seasonal-naive forecast's in-sample one-season-ahead error.
    """

    def values(self, f, y, mase, lower, upper):  # type: ignore[no-untyped-def]
        return (f - y).abs() / mase[:, None, :], torch.ones_like(y, dtype=torch.bool)


class Coverage(ForecastMetric):
    """Share of actuals inside the prediction interval (compare with its nominal level)."""

    higher_is_better = None  # type: ignore[assignment]

    def values(self, f, y, mase, lower, upper):  # type: ignore[no-untyped-def]
        inside = (y >= lower.double()) & (y <= upper.double())
        return inside.double(), torch.ones_like(y, dtype=torch.bool)


FORECAST_METRICS: dict[str, type[ForecastMetric]] = {
    "mae": MAE, "rmse": RMSE, "mape": MAPE, "smape": SMAPE, "mase": MASE, "coverage": Coverage,
}  # fmt: skip


def forecast_scores(
    forecast: torch.Tensor, actual: torch.Tensor, mase: torch.Tensor,
    lower: torch.Tensor | None = None, upper: torch.Tensor | None = None,
    names: tuple[str, ...] = ("mae", "rmse", "mape", "smape", "mase"),
) -> dict[str, float]:  # fmt: skip
    """The metrics of forecasts (N, H, T) against actuals in original units, MASE scales (N, T)."""
    lower = forecast if lower is None else lower
    upper = forecast if upper is None else upper
    out = {}
    for name in names:
        metric = FORECAST_METRICS[name]()
        metric.update(forecast, actual, mase, lower, upper)
        out[name] = float(metric.compute())
    return out


@TASKS.register("forecasting")
class Forecasting(Task):
    """Multi-step forecasting; outputs (B, H, T) or (B, H, T, Q) with the quantile loss."""

    target_kind = "continuous"
    metric_kind = "forecasting"
    default_loss = "mse"
    default_metrics = ("mae", "rmse", "mape", "smape", "mase")
    deployment = Deployment(
        exportable="torchlab.exporters.forecasting:forecast_exportable",
        refuses={
            "mar": "A TorchServe archive serves inputs that torchlab preprocesses, not "
            "forecasting windows; export a forecaster with --format torchscript, onnx or "
            "exported-program."
        },
        answer="torchlab.serve.answers:Forecast",
        analysis="torchlab.report.forecasting:forecasting",
    )

    def __init__(self, spec: DataSpec, loss: nn.Module, metrics: list[str]) -> None:
        super().__init__(spec, loss, metrics)
        self.quantiles: list[float] = list(getattr(loss, "quantiles", []))
        if len(self.quantiles) > 1 and "coverage" not in self.metric_names:
            self.metric_names = [*self.metric_names, "coverage"]
        unknown = [m for m in self.metric_names if m not in FORECAST_METRICS]
        if unknown:
            raise ConfigError(
                f"task.metrics names {', '.join(map(repr, unknown))}, which forecasting does not "
                f"compute; choose from {', '.join(FORECAST_METRICS)}."
            )

    @property
    def num_outputs(self) -> int:
        return max(1, len(self.spec.target_names)) * max(1, len(self.quantiles))

    def metrics(self, extra: tuple[str, ...] = ()) -> MetricCollection:
        names = [*self.metric_names, *extra]
        return MetricCollection({n: FORECAST_METRICS[n]() for n in names}, compute_groups=False)

    @property
    def middle(self) -> int | None:
        """Which quantile output is the point forecast: the median (or the middle one)."""
        if not self.quantiles:
            return None
        return self.quantiles.index(0.5) if 0.5 in self.quantiles else len(self.quantiles) // 2

    def point(self, outputs: torch.Tensor) -> torch.Tensor:
        """The point forecast (B, H, T); of outputs with bounds (B, H, T, Q), the middle
        quantile (a point forecaster with conformal bands gives three: lower, point, upper)."""
        if outputs.ndim == 3:
            return outputs
        return outputs[..., self.middle if self.middle is not None else outputs.shape[-1] // 2]

    def original(
        self, outputs: torch.Tensor, inputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Point forecast and interval bounds in the data's units, each (B, H, T)."""
        loc, scale = inputs["loc"][:, None], inputs["scale"][:, None]  # (B, 1, T)
        outputs = outputs.float()
        if outputs.ndim == 4:  # sorted, so quantiles never cross (Chernozhukov et al. 2010,
            outputs = outputs.sort(dim=-1).values  # https://doi.org/10.3982/ECTA7880)
        point = self.point(outputs) * scale + loc
        if outputs.ndim == 4 and outputs.shape[-1] > 1:
            return {"forecast": point, "lower": outputs[..., 0] * scale + loc,
                    "upper": outputs[..., -1] * scale + loc}  # fmt: skip
        return {"forecast": point}

    def evaluation_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        """As training's, except that a point forecaster with conformal bands is scored on
        its point forecast (the loss does not know the bands' extra axis)."""
        outputs = model(batch.inputs)
        scored = self.point(outputs) if outputs.ndim == 4 and not self.quantiles else outputs
        return StepOutput(self.loss_fn(scored, batch.target), outputs)

    @torch.no_grad()
    def interval_outcomes(
        self, models: dict[str, nn.Module], loader: Any, device: torch.device
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per model, over every batch of ``loader``: whether each actual lies inside the
        model's interval, and the interval's width in the data's units, each (N, H, T) on
        the CPU."""
        parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in models}
        for batch in loader.epoch(0):
            batch = batch.to(device)
            inputs = batch.inputs
            actual = batch.target * inputs["scale"][:, None] + inputs["loc"][:, None]
            for name, model in models.items():
                values = self.original(self.evaluation_step(model.eval(), batch).outputs, inputs)
                lower, upper = values["lower"], values["upper"]
                inside = (actual >= lower) & (actual <= upper)
                parts[name].append((inside.cpu(), (upper - lower).double().cpu()))
        return {
            name: (torch.cat([i for i, _ in got]), torch.cat([w for _, w in got]))
            for name, got in parts.items()
        }

    def update_metrics(self, metrics: MetricCollection, outputs: Any, batch: Batch) -> None:
        inputs = batch.inputs
        values = self.original(outputs, inputs)
        actual = batch.target * inputs["scale"][:, None] + inputs["loc"][:, None]
        point = values["forecast"]
        metrics.update(
            point, actual, inputs["mase"], values.get("lower", point), values.get("upper", point)
        )

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.point(outputs)

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"forecast": self.point(outputs.float())}
