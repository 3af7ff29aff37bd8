"""``transformer-forecaster``: a Transformer encoder over past steps and horizon queries."""

from __future__ import annotations

import torch
from torch import nn

from torchlab.data.base import DataSpec
from torchlab.models.forecasting.base import Forecaster, Normalize, Sizes, sizes
from torchlab.registry import MODELS


class TransformerForecaster(Forecaster):
    """Tokens: one per past step (its inputs projected) and one per horizon step (its future
    inputs projected plus a learned query); a Transformer encoder (Vaswani et al. 2017,
    https://arxiv.org/abs/1706.03762) mixes them and each horizon token becomes that
    step's forecast, so all steps come out at once."""

    def __init__(
        self,
        size: Sizes,
        d_model: int,
        heads: int,
        layers: int,
        dropout: float,
        normalize: Normalize,
    ) -> None:
        super().__init__(size, normalize)
        self.past_in = nn.Linear(size.past, d_model)
        self.future_in = nn.Linear(size.future, d_model) if size.future else None
        self.query = nn.Parameter(torch.zeros(size.horizon, d_model))
        self.position = nn.Parameter(torch.randn(size.lookback + size.horizon, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, 4 * d_model, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d_model, size.targets * size.quantiles)

    def forecast(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        ahead = self.query.expand(past.shape[0], -1, -1)  # (B, H, D)
        if self.future_in is not None:
            ahead = ahead + self.future_in(future)
        tokens = torch.cat([self.past_in(past), ahead], dim=1) + self.position  # (B, L+H, D)
        encoded = self.encoder(tokens)
        return self.out(encoded[:, -self.size.horizon :])  # (B, H, T*Q)


@MODELS.register("transformer-forecaster")
def transformer_forecaster(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    d_model: int = 32,
    heads: int = 4,
    layers: int = 2,
    dropout: float = 0.1,
    normalize: Normalize = "last",
) -> nn.Module:
    """A Transformer encoder forecaster (pre-norm layers, learned positions)."""
    return TransformerForecaster(
        sizes(spec, num_outputs, "transformer-forecaster"),
        d_model,
        heads,
        layers,
        dropout,
        normalize,
    )
