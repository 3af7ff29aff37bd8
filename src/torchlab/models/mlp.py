"""Multi-layer perceptron for tabular (or flattened) inputs."""

from __future__ import annotations

import math

from torch import nn

from torchlab.data.base import DataSpec
from torchlab.models import layers
from torchlab.registry import MODELS


@MODELS.register("mlp")
def mlp(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    hidden: tuple[int, ...] = (128, 128),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Module:
    """Linear -> [BatchNorm] -> activation -> [Dropout], once per hidden width, then a head.

    Args:
        hidden: Width of each hidden layer, e.g. ``[256, 256]``.
        activation: A registered activation (relu, gelu, silu, swish, ...).
        dropout: Dropout probability after each hidden layer.
        batch_norm: Put a BatchNorm1d before each activation.
    """
    modules: list[nn.Module] = [nn.Flatten()]
    width = math.prod(spec.input_shape)
    for size in hidden:
        modules.append(nn.Linear(width, size, bias=not batch_norm))
        if batch_norm:
            modules.append(nn.BatchNorm1d(size))
        modules.append(layers.activation(activation, "model.activation"))
        if dropout > 0:
            modules.append(nn.Dropout(dropout))
        width = size
    modules.append(layers.output_head(width, num_outputs, spec))
    return nn.Sequential(*modules)
