"""What every forecaster shares: its sizes from the data spec and per-window normalisation."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError

Normalize = Literal["none", "last", "mean", "trend"]


@dataclass(frozen=True)
class Sizes:
    """lookback L, past width Fp, horizon H, future width Ff, targets T, quantiles Q."""

    lookback: int
    past: int
    horizon: int
    future: int
    targets: int
    quantiles: int


def sizes(spec: DataSpec, num_outputs: int, name: str) -> Sizes:
    """A forecaster's sizes; a spec that is not of series windows is a ConfigError."""
    if spec.horizon <= 0 or len(spec.input_shape) != 2:
        raise ConfigError(
            f"Model '{name}' forecasts windows of a series source (data.source: series, co2, ...); "
            f"this data has inputs of shape {tuple(spec.input_shape)} and no horizon."
        )
    targets = max(1, len(spec.target_names))
    if num_outputs % targets:
        raise ConfigError(f"Model '{name}' got {num_outputs} outputs for {targets} targets.")
    lookback, past = spec.input_shape
    return Sizes(lookback, past, spec.horizon, spec.future_width, targets, num_outputs // targets)


class Forecaster(nn.Module):
    """Base of the forecasters: normalise, :meth:`forecast`, shape and denormalise.

    ``normalize: last`` subtracts each window's last observed target value from its target
    inputs and adds it back to the forecast (NLinear, Zeng et al. 2023,
    https://arxiv.org/abs/2205.13504): a model then learns changes, not levels, and a
    level that leaves the training range does not leave the model's range. ``mean``
    subtracts the window's mean, ``trend`` its least-squares line (see :meth:`levels`).
    """

    def __init__(self, size: Sizes, normalize: Normalize) -> None:
        super().__init__()
        self.size = size
        self.normalize = normalize

    def forecast(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """(B, L, Fp), (B, H, Ff) -> (B, H, T * Q) in normalised units."""
        raise NotImplementedError

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        past = inputs["past"]  # (B, L, Fp)
        batch, targets = past.shape[0], self.size.targets
        future = inputs.get("future")
        if future is None:
            future = past.new_zeros(batch, self.size.horizon, self.size.future)
        before, after = self.levels(past[..., :targets])  # (B, L, T), (B, H, T)
        past = torch.cat([past[..., :targets] - before, past[..., targets:]], dim=-1)
        out = self.forecast(past, future)  # (B, H, T * Q)
        out = out.reshape(batch, self.size.horizon, targets, self.size.quantiles)
        out = out + after[..., None]
        return out.squeeze(-1) if self.size.quantiles == 1 else out  # (B, H, T[, Q])

    def levels(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, T) -> what ``normalize`` subtracts over the lookback (B, L, T) and adds
        back over the horizon (B, H, T).

        ``trend`` fits a least-squares line to each window's targets and extrapolates it:
        the network then forecasts deviations from the window's own trend (detrending inside
        the model, so a trend that leaves the training range stays within the model's reach).
        """
        batch, lookback, targets = target.shape
        horizon = self.size.horizon
        if self.normalize == "trend":
            steps = torch.arange(lookback + horizon, device=target.device, dtype=target.dtype)
            t = steps[:lookback] - steps[:lookback].mean()  # centred time (L,)
            slope = (t[None, :, None] * target).sum(1) / t.pow(2).sum().clamp(min=1)  # (B, T)
            line = (
                target.mean(1)[:, None]
                + slope[:, None] * (steps - steps[:lookback].mean())[None, :, None]
            )
            return line[:, :lookback], line[:, lookback:]  # (B, L, T), (B, H, T)
        if self.normalize == "none":
            level = target.new_zeros(batch, targets)
        else:
            level = target[:, -1] if self.normalize == "last" else target.mean(dim=1)
        return level[:, None].expand(-1, lookback, -1), level[:, None].expand(-1, horizon, -1)


def mlp(widths: list[int], dropout: float) -> nn.Sequential:
    """Linear layers with ReLU and dropout between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)
