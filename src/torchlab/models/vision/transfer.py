"""Transfer learning on a pretrained network: freezing, BatchNorm, learning-rate scales, stages.

:class:`Backbone` wraps a torchvision classifier whose last layer was replaced. Its
parameters fall into the new *head* and the *stages* of the backbone (input to output).

- ``freeze_backbone`` trains only the head; :meth:`Backbone.set_trainable_stages` opens the
  top ``k`` stages, which the ``gradual_unfreeze`` callback calls on a schedule
  (Howard & Ruder, ULMFiT, https://arxiv.org/abs/1801.06146).
- ``freeze_bn`` keeps every BatchNorm layer in eval mode during training (its running
  statistics stay those of the pretrained weights, which matters with small batches);
  BatchNorm layers of frozen stages always stay in eval mode, so a frozen stage computes
  exactly what it did before training.
- :meth:`Backbone.lr_scale` gives the backbone ``backbone_lr_scale`` times the learning
  rate of the head (discriminative learning rates); the optimizer builder asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class Backbone(nn.Module):
    """A torchvision classifier with a new head and transfer-learning controls.

    Attributes:
        net: The torchvision network, head replaced.
        head: Dotted path of the head inside ``net``.
        stages: Module-name prefixes of each backbone stage, input to output.
        normalization: ``{"mean", "std"}`` the pretrained weights expect, or None.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        head: str,
        stages: Sequence[Sequence[str]],
        freeze_backbone: bool = False,
        freeze_bn: bool = False,
        backbone_lr_scale: float = 1.0,
        tta: str = "none",
        normalization: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.stages = [tuple(s) for s in stages]
        self.freeze_bn = freeze_bn
        self.backbone_lr_scale = backbone_lr_scale
        self.tta = tta
        self.normalization = normalization
        self.trainable_stages = len(self.stages)
        if freeze_backbone:
            self.set_trainable_stages(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        logits = self.net(x)
        if self.tta == "flip" and not self.training:
            logits = (logits + self.net(x.flip(-1))) / 2  # mean with the mirror image's logits
        return logits

    # --- which parameters train -----------------------------------------------------------

    def is_head(self, name: str) -> bool:
        """Whether parameter ``name`` (as in ``named_parameters``) belongs to the new head."""
        return name.startswith(f"net.{self.head}.")

    def stage_of(self, name: str) -> int:
        """The stage index of a backbone parameter (names outside every stage: the last)."""
        inner = name.removeprefix("net.")
        for index, prefixes in enumerate(self.stages):
            if any(inner == p or inner.startswith(f"{p}.") for p in prefixes):
                return index
        return len(self.stages) - 1

    def set_trainable_stages(self, count: int) -> None:
        """Train the head and the top ``count`` backbone stages; freeze the rest."""
        self.trainable_stages = max(0, min(count, len(self.stages)))
        first_open = len(self.stages) - self.trainable_stages
        for name, param in self.named_parameters():
            param.requires_grad_(self.is_head(name) or self.stage_of(name) >= first_open)
        self.train(self.training)  # re-apply which BatchNorm layers stay in eval mode

    def lr_scale(self, name: str) -> float:
        """Learning-rate factor of parameter ``name``: 1 for the head, less for the backbone."""
        return 1.0 if self.is_head(name) else self.backbone_lr_scale

    # --- BatchNorm statistics ----------------------------------------------------------------

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:
            first_open = len(self.stages) - self.trainable_stages
            for name, module in self.net.named_modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and (
                    self.freeze_bn or self.stage_of(f"net.{name}.weight") < first_open
                ):
                    module.eval()  # running statistics stay as loaded
        return self

    def extra_repr(self) -> str:
        return (
            f"head={self.head!r}, stages={len(self.stages)}, trainable_stages="
            f"{self.trainable_stages}, freeze_bn={self.freeze_bn}, tta={self.tta!r}"
        )

    def describe(self) -> dict[str, Any]:
        """Facts for a report: trainable parameters and stages."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {
            "stages": len(self.stages),
            "trainable_stages": self.trainable_stages,
            "trainable_parameters": trainable,
        }
