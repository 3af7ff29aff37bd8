"""Policy and value networks: MLPs built from torchlab's activation registry."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from torchlab.models.layers import activation as make_activation


def mlp(
    in_features: int,
    out_features: int,
    hidden: Sequence[int],
    activation: str = "relu",
    output_activation: nn.Module | None = None,
    where: str = "agent.activation",
) -> nn.Sequential:
    """Linear -> activation per hidden width, then a linear head (and an output activation)."""
    modules: list[nn.Module] = []
    width = in_features
    for size in hidden:
        modules += [nn.Linear(width, size), make_activation(activation, where)]
        width = size
    modules.append(nn.Linear(width, out_features))
    if output_activation is not None:
        modules.append(output_activation)
    return nn.Sequential(*modules)


def flat_size(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def orthogonal_init(module: nn.Module, gain: float = math.sqrt(2)) -> None:
    """Orthogonal weights, zero biases; the output layer gets the last gain.

    As in the PPO implementation study of Engstrom et al. 2020 (https://arxiv.org/abs/2005.12729).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)


class ScaledTanh(nn.Module):
    """Squash to ``[low, high]`` per action dimension (continuous actions)."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("scale", (high - low) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.center + self.scale * torch.tanh(x)


def adam(params: Iterable[nn.Parameter], lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel: one call per update instead of a Python loop over the
    parameters, which is much of an update's cost for networks this small."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``theta' <- tau * theta + (1 - tau) * theta'`` (Lillicrap et al. 2016,
    https://arxiv.org/abs/1509.02971); ``tau=1`` copies."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.lerp_(s, tau)
