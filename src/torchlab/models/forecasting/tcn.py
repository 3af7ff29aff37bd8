"""``tcn``: a temporal convolutional network of dilated causal convolutions.

Bai, Kolter & Koltun (2018), "An Empirical Evaluation of Generic Convolutional and
Recurrent Networks for Sequence Modeling", https://arxiv.org/abs/1803.01271.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from torchlab.data.base import DataSpec
from torchlab.models.forecasting.base import Forecaster, Normalize, Sizes, mlp, sizes
from torchlab.registry import MODELS


class CausalBlock(nn.Module):
    """Two weight-normalised dilated causal convolutions with a residual connection."""

    def __init__(self, inputs: int, outputs: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = (kernel - 1) * dilation  # left padding only: step t sees nothing after t
        self.conv1 = weight_norm(nn.Conv1d(inputs, outputs, kernel, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(outputs, outputs, kernel, dilation=dilation))
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv1d(inputs, outputs, 1) if inputs != outputs else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L)
        y = self.dropout(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        y = self.dropout(F.relu(self.conv2(F.pad(y, (self.pad, 0)))))
        return F.relu(y + self.skip(x))  # (B, C', L)


class TCNForecaster(Forecaster):
    """Dilations 1, 2, 4, ... so the receptive field grows exponentially with depth; the
    last step's features and the future inputs -> every horizon step."""

    def __init__(
        self, size: Sizes, channels: list[int], kernel: int, dropout: float, normalize: Normalize
    ):
        super().__init__(size, normalize)
        widths = [size.past, *channels]
        self.blocks = nn.Sequential(
            *(
                CausalBlock(a, b, kernel, 2**i, dropout)
                for i, (a, b) in enumerate(itertools.pairwise(widths))
            )
        )
        outputs = size.horizon * size.targets * size.quantiles
        self.head = mlp([channels[-1] + size.horizon * size.future, outputs], dropout)

    def forecast(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        features = self.blocks(past.transpose(1, 2))[:, :, -1]  # (B, C) at the last step
        flat = torch.cat([features, future.flatten(1)], dim=1)  # (B, C + H*Ff)
        return self.head(flat).reshape(past.shape[0], self.size.horizon, -1)  # (B, H, T*Q)


@MODELS.register("tcn")
def tcn(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    channels: list[int] = [32, 32, 32],  # noqa: B006 - validated, never mutated
    kernel_size: int = 3,
    dropout: float = 0.1,
    normalize: Normalize = "last",
) -> nn.Module:
    """A TCN; its receptive field is 1 + 2 (kernel_size - 1)(2^len(channels) - 1) steps."""
    return TCNForecaster(sizes(spec, num_outputs, "tcn"), channels, kernel_size, dropout, normalize)
