"""torchvision classification backbones by name, ready for transfer learning.

``model: {name: mobilenet_v2, weights: imagenet}`` builds torchvision's network, loads
ImageNet weights (found offline where installed, see :mod:`.pretrained`), ``none`` (random)
or a file, and replaces the classifier's last layer with one of ``num_outputs``. One input
channel is handled by adapting the first convolution: its RGB filters are summed, which
gives a gray image the response the filters gave the same image in colour (as timm does).

Transfer-learning controls live on :class:`Backbone` (see :mod:`.transfer`): a frozen
backbone, frozen BatchNorm statistics, a lower learning rate for the backbone than for the
new head (``lr_scale``), and stages a gradual-unfreezing callback opens one by one.
Variants are data: :data:`ARCHITECTURES` says where each network's head and stages are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import nn

from torchlab.data.base import DataSpec, InputNeeds, PretrainedBackbone
from torchlab.errors import ConfigError
from torchlab.models import declares_input_needs, layers
from torchlab.models.vision.pretrained import (
    imagenet_state_dict,
    imagenet_versions,
    load_weights_file,
)
from torchlab.models.vision.transfer import Backbone
from torchlab.notices import notice
from torchlab.registry import MODELS, variant


@dataclass(frozen=True)
class Architecture:
    """Where a torchvision network keeps its classifier layer and its stages.

    Attributes:
        head: Dotted path of the final ``nn.Linear`` that is replaced.
        stages: Dotted module paths from input to output, one entry per stage; an entry
            ``"features.*"`` expands to one stage per child of ``features``, and
            ``"features.|pool"`` to one stage per block ending in a max-pool (VGG).
    """

    head: str
    stages: tuple[str, ...]


ARCHITECTURES = {
    "resnet18": Architecture("fc", ("conv1,bn1", "layer1", "layer2", "layer3", "layer4")),
    "resnet34": Architecture("fc", ("conv1,bn1", "layer1", "layer2", "layer3", "layer4")),
    "resnet50": Architecture("fc", ("conv1,bn1", "layer1", "layer2", "layer3", "layer4")),
    "vgg11_bn": Architecture("classifier.6", ("features.|pool", "classifier")),
    "vgg16_bn": Architecture("classifier.6", ("features.|pool", "classifier")),
    "mobilenet_v2": Architecture("classifier.1", ("features.*",)),
    "mobilenet_v3_small": Architecture("classifier.3", ("features.*", "classifier")),
    "mobilenet_v3_large": Architecture("classifier.3", ("features.*", "classifier")),
    "efficientnet_b0": Architecture("classifier.1", ("features.*",)),
    "convnext_tiny": Architecture("classifier.2", ("features.*", "classifier")),
}


def stage_prefixes(net: nn.Module, arch: Architecture) -> list[tuple[str, ...]]:
    """Each stage as the module-name prefixes it covers, from input to output."""
    stages: list[tuple[str, ...]] = []
    for entry in arch.stages:
        if entry.endswith(".*"):
            parent = entry[:-2]
            children = net.get_submodule(parent)
            stages += [(f"{parent}.{name}",) for name, _ in children.named_children()]
        elif entry.endswith(".|pool"):
            parent = entry[:-6]
            block: list[str] = []
            for name, child in net.get_submodule(parent).named_children():
                block.append(f"{parent}.{name}")
                if isinstance(child, nn.MaxPool2d):
                    stages.append(tuple(block))
                    block = []
            if block:
                stages.append(tuple(block))
        else:
            stages.append(tuple(entry.split(",")))
    return stages


def replace_module(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, name, module)


def adapt_first_conv(net: nn.Module, channels: int) -> None:
    """Make the first convolution take ``channels`` inputs, keeping its learned filters."""
    path, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == channels:
        return
    new = nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None,
    )  # fmt: skip
    with torch.no_grad():
        summed = conv.weight.sum(dim=1, keepdim=True)  # (out, 1, k, k)
        new.weight.copy_(summed.repeat(1, channels, 1, 1) / channels)  # (out, C, k, k)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    replace_module(net, path, new)


def load_file_weights(net: nn.Module, path: str, head: str) -> None:
    """Weights from a file (a torchlab run's model.safetensors or a torchvision state dict).

    Tensors whose shapes differ (a classifier for another number of classes) are left as
    initialised; any other mismatch is an error naming the file.
    """
    state = load_weights_file(path)
    state = {k.removeprefix("net."): v for k, v in state.items()}
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(usable))
    if any(not k.startswith(f"{head}.") for k in missing):  # more than the head is missing
        raise ConfigError(
            f"Weights file '{path}' does not fit this network ({len(missing)} tensors missing "
            f"or of another shape, e.g. {', '.join(missing[:3])}); check model.name and model.weights."
        )
    if missing:
        notice(
            f"Weights file '{path}': {', '.join(missing)} left newly initialised (other shape).",
        )
    net.load_state_dict(usable, strict=False)


def build_backbone(
    arch_name: str,
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    weights: str = "none",
    freeze_backbone: bool = False,
    freeze_bn: bool = False,
    backbone_lr_scale: float = 1.0,
    tta: Literal["none", "flip"] = "none",
) -> Backbone:
    """torchvision's ``arch_name`` with a new ``num_outputs``-way head.

    Args:
        weights: ``imagenet`` (torchvision's ImageNet weights), ``none`` (random) or a
            weights file (``.safetensors`` or a ``torch.save`` state dict).
        freeze_backbone: Train only the new head (a ``gradual_unfreeze`` callback may
            open the backbone stage by stage later).
        freeze_bn: Keep every BatchNorm layer's running statistics fixed in training
            (frozen stages always keep theirs).
        backbone_lr_scale: The backbone's learning rate as a fraction of optim.lr
            (discriminative learning rates; the head gets the full rate).
        tta: ``flip``: in evaluation and prediction, average the logits of each image
            and its mirror image (test-time augmentation).
    """
    import torchvision

    if len(spec.input_shape) != 3 or spec.input_shape[0] not in (1, 3):
        raise ConfigError(
            f"model '{arch_name}' needs images shaped (1 or 3 channels, height, width); this "
            f"data gives {spec.input_shape}."
        )
    if backbone_lr_scale < 0:
        raise ConfigError(f"model.backbone_lr_scale must be >= 0; received {backbone_lr_scale}.")
    arch = ARCHITECTURES[arch_name]
    net = torchvision.models.get_model(arch_name, weights=None)
    normalization = None
    if weights == "imagenet":
        entry, state = imagenet_state_dict(arch_name)
        net.load_state_dict(state)
        transform = entry.transforms()
        normalization = {"mean": list(transform.mean), "std": list(transform.std)}
    old_head = net.get_submodule(arch.head)
    replace_module(net, arch.head, layers.output_head(old_head.in_features, num_outputs, spec))
    if weights not in ("imagenet", "none"):
        load_file_weights(net, weights, arch.head)
    adapt_first_conv(net, spec.input_shape[0])
    return Backbone(
        net,
        head=arch.head,
        stages=stage_prefixes(net, arch),
        freeze_backbone=freeze_backbone,
        freeze_bn=freeze_bn,
        backbone_lr_scale=backbone_lr_scale,
        tta=tta,
        normalization=normalization,
    )


def backbone_needs(arch_name: str, settings: Mapping[str, Any]) -> InputNeeds:
    """What ``arch_name`` with ``settings["weights"]`` needs of its images.

    ImageNet weights need the statistics they were trained with, which torchvision's
    ``Weights.transforms()`` carry; any pretrained weights give a backbone whose features
    a baseline can probe.
    """
    weights = settings["weights"]
    if weights == "none":
        return InputNeeds()
    backbone = PretrainedBackbone(arch_name, weights)
    if weights != "imagenet":
        return InputNeeds(backbone=backbone)
    transform = imagenet_versions(arch_name)[0].transforms()
    return InputNeeds(tuple(transform.mean), tuple(transform.std), backbone=backbone)


for _name in ARCHITECTURES:
    _needs = declares_input_needs(partial(backbone_needs, _name))
    MODELS.register(_name)(_needs(variant(build_backbone, _name)))


def backbone_names() -> list[str]:
    """The registered backbone names."""
    return list(ARCHITECTURES)
