"""Optimizer builders and parameter groups.

Builders are called as ``builder(param_groups, lr, weight_decay, *, settings...)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn, optim

from torchlab.registry import OPTIMIZERS, variant


def param_groups(
    model: nn.Module, weight_decay: float, decay_norm_and_bias: bool, lr: float = 1.0
) -> list[dict[str, Any]]:
    """Parameter groups by weight decay and learning-rate scale.

    Biases and normalisation weights (every parameter with fewer than two dimensions) are not
    decayed: decaying them only pulls activations toward zero and hurts accuracy (as in
    BERT and timm). A model may scale the learning rate of its parts with a method
    ``lr_scale(parameter_name) -> float`` (a pretrained backbone lower than its new head,
    layer-wise decay); each group keeps its ``lr_scale`` so schedules and the LR finder
    preserve the ratios. Frozen parameters are included, so unfreezing them later trains
    them (optimizers skip parameters without a gradient).
    """
    scale_of = getattr(model, "lr_scale", None)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        decay = weight_decay if decay_norm_and_bias or param.ndim >= 2 else 0.0
        scale = float(scale_of(name)) if scale_of is not None else 1.0
        groups.setdefault((scale, decay), []).append(param)
    return [
        {"params": params, "weight_decay": decay, "lr": lr * scale, "lr_scale": scale}
        for (scale, decay), params in groups.items()
    ]


Groups = Iterable[dict[str, Any]]


@OPTIMIZERS.register("sgd")
def sgd(
    groups: Groups,
    lr: float,
    weight_decay: float,
    /,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> optim.Optimizer:
    """Stochastic gradient descent with (Nesterov) momentum."""
    return optim.SGD(
        groups,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        nesterov=nesterov,
        dampening=dampening,
    )


def adam(
    optimizer: type[optim.Adam | optim.AdamW],
    groups: Groups,
    lr: float,
    weight_decay: float,
    /,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> optim.Optimizer:
    """Adam (``optim.Adam``: weight decay is L2 added to the gradient) or AdamW (decoupled
    weight decay, Loshchilov & Hutter, https://arxiv.org/abs/1711.05101)."""
    return optimizer(
        groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, amsgrad=amsgrad
    )


OPTIMIZERS.register("adam")(variant(adam, optim.Adam))
OPTIMIZERS.register("adamw")(variant(adam, optim.AdamW))


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    groups: Groups,
    lr: float,
    weight_decay: float,
    /,
    *,
    alpha: float = 0.99,
    eps: float = 1e-8,
    momentum: float = 0.0,
    centered: bool = False,
) -> optim.Optimizer:
    return optim.RMSprop(
        groups,
        lr=lr,
        weight_decay=weight_decay,
        alpha=alpha,
        eps=eps,
        momentum=momentum,
        centered=centered,
    )


def build_optimizer(config: Any, model: nn.Module) -> optim.Optimizer:
    """The optimizer a config's ``optim`` section names, over ``model``'s parameters."""
    groups = param_groups(model, config.weight_decay, config.decay_norm_and_bias, config.lr)
    return OPTIMIZERS.build(config, "optim", groups, config.lr, config.weight_decay)
