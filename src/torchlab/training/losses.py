"""Loss builders. ``focal`` shows how a custom loss is written and registered like the built-ins."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchlab.registry import LOSSES


def _weights(values: list[float] | None) -> torch.Tensor | None:
    return None if values is None else torch.tensor(values, dtype=torch.float32)


@LOSSES.register("cross_entropy")
def cross_entropy(
    *, label_smoothing: float = 0.0, class_weights: list[float] | None = None
) -> nn.Module:
    """Softmax cross-entropy on logits (B, C) and class indices (B,).

    Args:
        label_smoothing: Mass spread uniformly over all classes (Szegedy et al., 2016).
        class_weights: One weight per class, e.g. inverse frequencies for imbalanced data.
    """
    return nn.CrossEntropyLoss(weight=_weights(class_weights), label_smoothing=label_smoothing)


@LOSSES.register("bce")
def bce(*, pos_weight: float | list[float] | None = None) -> nn.Module:
    """Binary cross-entropy on logits; ``pos_weight`` > 1 favours recall of positives."""
    weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


class FocalLoss(nn.Module):
    """Multi-class focal loss: cross-entropy scaled by ``(1 - p_t) ** gamma``.

    Down-weights easy examples so training concentrates on hard ones (Lin et al., 2017,
    https://arxiv.org/abs/1708.02002). With ``gamma = 0`` it is cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, alpha: list[float] | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", _weights(alpha))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)  # (B, C)
        log_p_t = log_p.gather(1, target.unsqueeze(1)).squeeze(1)  # (B,)
        loss = -((1 - log_p_t.exp()) ** self.gamma) * log_p_t
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


@LOSSES.register("focal")
def focal(*, gamma: float = 2.0, alpha: list[float] | None = None) -> nn.Module:
    """Focal loss for imbalanced classes; ``alpha`` weights each class."""
    return FocalLoss(gamma, alpha)


@LOSSES.register("mse")
def mse() -> nn.Module:
    return nn.MSELoss()


@LOSSES.register("l1")
def l1() -> nn.Module:
    return nn.L1Loss()


@LOSSES.register("huber")
def huber(*, delta: float = 1.0) -> nn.Module:
    """Quadratic for errors below ``delta``, linear above: robust to outliers."""
    return nn.HuberLoss(delta=delta)
