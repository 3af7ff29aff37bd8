"""Calibrations fitted after training, as modules around the trained model.

A classifier's logits divided by a fitted temperature (``task.calibrate``), and a
forecaster's conformal interval bands (``task.intervals``). Being modules, they travel with
the model into every export graph, so the artefact's outputs are the calibrated ones and
export verification covers them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Calibrated(nn.Module):
    """``model``'s outputs divided by ``temperature`` (Guo et al. 2017, "On Calibration of
    Modern Neural Networks", https://arxiv.org/abs/1706.04599). The argmax is unchanged; a
    temperature above 1 softens overconfident probabilities."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # (typed a tensor so TorchScript can script it; eager text models take a dict too)
        return self.model(inputs) / self.temperature


class ConformalBands(nn.Module):
    """A forecaster's outputs with conformal interval bounds, ``(B, H, T, Q)``, in scaled units.

    A point forecaster ``(B, H, T)`` gets ``[point - w, point, point + w]``; a quantile
    forecaster keeps its quantiles and moves its outermost two out by ``w`` (in by ``-w``
    when they covered more than asked: conformalized quantile regression, Romano et al.
    2019, https://arxiv.org/abs/1905.03222), never past its point forecast. ``widths`` is
    ``(H, T)``: one per horizon step and target, since errors grow with the step.
    """

    def __init__(self, model: nn.Module, widths: torch.Tensor, middle: int | None = None) -> None:
        super().__init__()
        self.model, self.middle = model, middle
        self.register_buffer("widths", torch.as_tensor(widths, dtype=torch.float32))

    def forward(self, inputs: Any, future: torch.Tensor | None = None) -> torch.Tensor:
        # ``inputs``: a window dict, or an export's positional ``past`` (and ``future``)
        outputs = self.model(inputs) if future is None else self.model(inputs, future)
        if outputs.ndim == 3:
            return torch.stack([outputs - self.widths, outputs, outputs + self.widths], dim=-1)
        levels = outputs.sort(dim=-1).values
        point = levels[..., self.middle if self.middle is not None else levels.shape[-1] // 2]
        lower = torch.minimum(levels[..., 0] - self.widths, point)
        upper = torch.maximum(levels[..., -1] + self.widths, point)
        return torch.cat([lower[..., None], levels[..., 1:-1], upper[..., None]], dim=-1)


def uncalibrated(model: nn.Module) -> nn.Module:
    """The model as trained, without its temperature or interval bands."""
    return model.model if isinstance(model, (Calibrated, ConformalBands)) else model
