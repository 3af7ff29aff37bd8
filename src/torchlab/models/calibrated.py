"""A trained classifier whose logits are divided by a fitted temperature (``task.calibrate``).

Being a module, the temperature travels with the model into every export graph, so the
artefact's probabilities are the calibrated ones and export verification covers it.
"""

from __future__ import annotations

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


def uncalibrated(model: nn.Module) -> nn.Module:
    """The model as trained, without its temperature."""
    return model.model if isinstance(model, Calibrated) else model
