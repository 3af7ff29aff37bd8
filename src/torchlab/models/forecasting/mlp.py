"""``mlp-forecaster``: the flattened window through an MLP, all horizon steps at once."""

from __future__ import annotations

import torch
from torch import nn

from torchlab.data.base import DataSpec
from torchlab.models.forecasting.base import Forecaster, Normalize, Sizes, mlp, sizes
from torchlab.registry import MODELS


class MLPForecaster(Forecaster):
    """Past and future inputs flattened -> hidden layers -> every step and quantile.

    With ``hidden: []`` and ``normalize: last`` this is NLinear, a strong linear baseline
    (Zeng et al. 2023, https://arxiv.org/abs/2205.13504).
    """

    def __init__(self, size: Sizes, hidden: list[int], dropout: float, normalize: Normalize):
        super().__init__(size, normalize)
        width = size.lookback * size.past + size.horizon * size.future
        self.net = mlp([width, *hidden, size.horizon * size.targets * size.quantiles], dropout)

    def forecast(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        flat = torch.cat([past.flatten(1), future.flatten(1)], dim=1)  # (B, L*Fp + H*Ff)
        return self.net(flat).reshape(past.shape[0], self.size.horizon, -1)  # (B, H, T*Q)


@MODELS.register("mlp-forecaster")
def mlp_forecaster(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    hidden: list[int] = [64],  # noqa: B006 - validated, never mutated
    dropout: float = 0.0,
    normalize: Normalize = "last",
) -> nn.Module:
    """An MLP over the whole window (``hidden: []``: linear)."""
    return MLPForecaster(sizes(spec, num_outputs, "mlp-forecaster"), hidden, dropout, normalize)
