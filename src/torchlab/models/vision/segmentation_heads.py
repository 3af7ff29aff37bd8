"""torchvision's FCN and DeepLabV3 segmentation heads on pretrained classification backbones.

Every model here takes images in [0, 1] (what the segmentation sources give), standardises
them with the ImageNet statistics the backbones were trained with, and returns per-pixel
logits ``(B, num_classes, H, W)`` at the input size (torchvision's models return a dict).

``deeplabv3_mobilenet_v2`` is assembled from torchvision pieces around MobileNetV2, whose
ImageNet weights are installed offline; the ResNet-50 and MobileNetV3 builders are
torchvision's own, with their ImageNet backbone loaded through
:func:`torchlab.models.vision.pretrained.imagenet_state_dict` (a clear error offline).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models.vision.pretrained import imagenet_state_dict
from torchlab.notices import notice
from torchlab.registry import MODELS, variant

BackboneWeights = Literal["imagenet", "none", "auto"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def backbone_state(arch: str, weights: BackboneWeights) -> dict[str, torch.Tensor] | None:
    """ImageNet weights of ``arch``; ``auto`` falls back to none (with a warning) offline."""
    if weights == "none":
        return None
    try:
        return imagenet_state_dict(arch)[1]
    except ConfigError as exc:
        if weights == "imagenet":
            raise
        notice(f"{exc} Training '{arch}' from scratch.")
        return None


class PixelLogits(nn.Module):
    """Standardise [0, 1] images, run a segmentation network, return logits at input size.

    Args:
        net: A module returning logits or torchvision's ``{"out": logits}``.
        backbone: The parameters' name prefix of the pretrained part, for ``lr_scale``.
        backbone_lr_scale: Learning-rate factor of the backbone (discriminative rates).
    """

    def __init__(self, net: nn.Module, backbone: str = "", backbone_lr_scale: float = 1.0) -> None:
        super().__init__()
        self.net, self.backbone, self.backbone_lr_scale = net, backbone, backbone_lr_scale
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net((x - self.mean) / self.std)
        logits = out["out"] if isinstance(out, dict) else out  # (B, C, h, w)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits  # (B, C, H, W)

    def lr_scale(self, name: str) -> float:
        """Backbone parameters train at ``backbone_lr_scale`` times the base rate."""
        inside = self.backbone and name.startswith(f"net.{self.backbone}.")
        return self.backbone_lr_scale if inside else 1.0


def dilate(features: nn.Sequential, output_stride: int) -> None:
    """Replace strides beyond ``output_stride`` by dilation (DeepLab's atrous convolution,
    Chen et al., 2017, https://arxiv.org/abs/1706.05587), keeping the receptive field."""
    stride, dilation = 1, 1
    for conv in (m for m in features.modules() if isinstance(m, nn.Conv2d)):
        if conv.kernel_size == (1, 1):
            continue
        if conv.stride == (2, 2):
            if stride >= output_stride:
                conv.stride, dilation = (1, 1), dilation * 2
            else:
                stride *= 2
        conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


class MobileNetV2DeepLab(nn.Module):
    """MobileNetV2 features (dilated to ``output_stride``) and torchvision's DeepLabV3 head."""

    def __init__(self, num_classes: int, output_stride: int, rates: tuple[int, ...]) -> None:
        import torchvision
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead

        super().__init__()
        self.backbone = torchvision.models.mobilenet_v2().features  # (B, 1280, H / os, W / os)
        dilate(self.backbone, output_stride)
        self.head = DeepLabHead(1280, num_classes, rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, C, H / os, W / os)


def _check_image(spec: DataSpec, name: str) -> None:
    if len(spec.input_shape) != 3 or spec.input_shape[0] != 3:
        raise ConfigError(
            f"model '{name}' needs RGB images shaped (3, height, width); this data gives "
            f"{spec.input_shape}."
        )


@MODELS.register("deeplabv3_mobilenet_v2")
def deeplabv3_mobilenet_v2(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    weights_backbone: BackboneWeights = "imagenet",
    output_stride: Literal[8, 16, 32] = 16,
    atrous_rates: tuple[int, int, int] = (12, 24, 36),
    backbone_lr_scale: float = 1.0,
) -> nn.Module:
    """DeepLabV3 on an ImageNet-pretrained MobileNetV2 (weights installed offline).

    Args:
        weights_backbone: ``imagenet``, ``none`` (random) or ``auto`` (imagenet if present).
        output_stride: Input-to-feature-map ratio; lower keeps finer detail, costs more.
        atrous_rates: Dilations of the ASPP branches; smaller suits small images.
        backbone_lr_scale: Learning-rate factor of the pretrained backbone.
    """
    _check_image(spec, "deeplabv3_mobilenet_v2")
    net = MobileNetV2DeepLab(num_outputs, output_stride, atrous_rates)
    state = backbone_state("mobilenet_v2", weights_backbone)
    if state is not None:
        features = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        net.backbone.load_state_dict(features)
    return PixelLogits(net, "backbone", backbone_lr_scale)


def torchvision_segmenter(
    builder_name: str,
    arch: str,
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    weights_backbone: BackboneWeights = "imagenet",
    backbone_lr_scale: float = 1.0,
) -> nn.Module:
    """torchvision's ``builder_name`` network on its dilated ``arch`` backbone (the ImageNet
    weights are downloaded if absent).

    Args:
        weights_backbone: ``imagenet``, ``none`` or ``auto`` (imagenet if present).
        backbone_lr_scale: Learning-rate factor of the backbone.
    """
    import torchvision

    _check_image(spec, builder_name)
    builder = getattr(torchvision.models.segmentation, builder_name)
    net = builder(weights=None, weights_backbone=None, num_classes=num_outputs, aux_loss=False)
    state = backbone_state(arch, weights_backbone)
    if state is not None:
        if arch.startswith("mobilenet"):  # the backbone wraps ``features``
            state = {
                k.removeprefix("features."): v
                for k, v in state.items()
                if k.startswith("features.")
            }
        missing, unexpected = net.backbone.load_state_dict(state, strict=False)
        unexpected = [k for k in unexpected if not k.startswith(("fc.", "classifier."))]
        if missing or unexpected:
            raise ConfigError(
                f"The ImageNet weights of '{arch}' do not fit '{builder_name}' (missing "
                f"{missing[:3]}, unexpected {unexpected[:3]}); use weights_backbone: none."
            )
    return PixelLogits(net, "backbone", backbone_lr_scale)


# torchvision's segmentation networks, each with the ImageNet classifier its backbone comes from.
TORCHVISION_SEGMENTERS = {
    "fcn_resnet50": "resnet50",
    "deeplabv3_resnet50": "resnet50",
    "deeplabv3_mobilenet_v3_large": "mobilenet_v3_large",
}
for _name, _arch in TORCHVISION_SEGMENTERS.items():
    MODELS.register(_name)(variant(torchvision_segmenter, _name, _arch))
