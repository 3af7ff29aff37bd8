"""Custom layers and activations, registered like the built-ins.

``Swish`` shows how to write an activation with a learnable parameter; ``Rescale`` shows a
parameter-free layer with buffers, used as the head of regression models so they predict
in the target's own units while training from a well-scaled start.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from torchlab.registry import ACTIVATIONS


class Swish(nn.Module):
    """``x * sigmoid(beta * x)`` with a learnable ``beta`` (Ramachandran et al., 2017).

    https://arxiv.org/abs/1710.05941 — with beta fixed at 1 this is SiLU.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)


class Rescale(nn.Module):
    """``y = x * std + mean``: maps standardised outputs back to the target's units."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


ACTIVATIONS.register("relu")(nn.ReLU)
ACTIVATIONS.register("gelu")(nn.GELU)
ACTIVATIONS.register("silu")(nn.SiLU)
ACTIVATIONS.register("tanh")(nn.Tanh)
ACTIVATIONS.register("leaky_relu")(nn.LeakyReLU)
ACTIVATIONS.register("elu")(nn.ELU)
ACTIVATIONS.register("swish")(Swish)


def activation(name: str, where: str = "model.activation") -> nn.Module:
    """A fresh activation module by registered name."""
    return ACTIVATIONS.get(name, where).builder()


def output_head(in_features: int, num_outputs: int, spec) -> nn.Module:  # type: ignore[no-untyped-def]
    """The final linear layer; regression heads rescale to the target's units."""
    linear = nn.Linear(in_features, num_outputs)
    if spec.target_kind == "continuous" and spec.target_mean:
        return nn.Sequential(linear, Rescale(spec.target_mean, spec.target_std))
    return linear
