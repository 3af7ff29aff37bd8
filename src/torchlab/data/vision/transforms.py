"""Augmentation presets, normalisation and MixUp/CutMix on torchvision.transforms.v2.

Training transforms take a ``(C, H, W)`` uint8 image (as :func:`~torchlab.data.vision.files.load_image`
returns it) and give a normalised float tensor of the configured size; evaluation transforms only
resize and normalise, so validation and test measure the model, not the augmentation.

Presets, from gentle to heavy:

- ``none``: resize only.
- ``light``: random resized crop (80-100% of the area) and horizontal flip.
- ``standard``: random resized crop (35-100%), flip, rotation up to 15 degrees, colour jitter.
- ``strong``: random resized crop (8-100%, as in the ImageNet recipes), flip,
  TrivialAugmentWide (Muller & Hutter, https://arxiv.org/abs/2103.10158) and random erasing
  (Zhong et al., https://arxiv.org/abs/1708.04896).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torchvision.transforms import v2

from torchlab.data.base import InputNeeds
from torchlab.errors import ConfigError

Preset = Literal["none", "light", "standard", "strong"]
PRESETS: tuple[str, ...] = ("none", "light", "standard", "strong")

# What torchvision's ImageNet weights were trained on (their ``transforms()`` carry the same).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def fixed_statistics(
    normalize: str, needs: InputNeeds, channels: int
) -> tuple[list[float], list[float]] | None:
    """The mean and std a source normalises with, or None for the training split's own.

    ``imagenet`` gives ImageNet statistics; ``auto`` follows the model: the statistics its
    pretrained weights were trained with (what it declares in ``needs``), when it has any.
    """
    if normalize == "imagenet":
        return per_channel(IMAGENET_MEAN, IMAGENET_STD, channels)
    if normalize == "auto" and needs.image_mean:
        return per_channel(needs.image_mean, needs.image_std, channels)
    return None


def per_channel(
    mean: Sequence[float], std: Sequence[float], channels: int
) -> tuple[list[float], list[float]]:
    """RGB statistics for ``channels`` (a gray channel gets the channel average)."""
    if channels == len(mean):
        return list(mean), list(std)
    return [sum(mean) / len(mean)], [sum(std) / len(std)]


def _augmentations(preset: str, size: int, hflip: bool) -> list[Any]:
    flip = [v2.RandomHorizontalFlip()] if hflip else []
    if preset == "none":
        return [v2.Resize([size, size], antialias=True)]
    if preset == "light":
        return [v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True), *flip]
    if preset == "standard":
        return [
            v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
            *flip,
            v2.RandomRotation(15),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ]
    if preset == "strong":
        return [
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
            *flip,
            v2.TrivialAugmentWide(),
        ]
    raise ConfigError(
        f"Augmentation preset '{preset}' does not exist; use one of {', '.join(PRESETS)}."
    )


def train_transform(
    preset: str, size: int, mean: Sequence[float], std: Sequence[float], hflip: bool = True
) -> v2.Compose:
    """uint8 ``(C, h, w)`` -> augmented, normalised float ``(C, size, size)``."""
    steps = [
        *_augmentations(preset, size, hflip),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ]
    if preset == "strong":  # erasing acts on the normalised tensor, so 0 is the mean colour
        steps.append(v2.RandomErasing(p=0.25))
    return v2.Compose(steps)


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """uint8 ``(C, h, w)`` -> resized, normalised float ``(C, size, size)``.

    Resizes in float, as the run's featurizer does at predict time, so evaluation and
    prediction see identical inputs.
    """
    return v2.Compose(
        [
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize([size, size], antialias=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def pixel_transform(size: int) -> v2.Compose:
    """uint8 ``(C, h, w)`` -> float ``(C, size, size)`` in [0, 1]: for dataset statistics."""
    return v2.Compose(
        [v2.Resize([size, size], antialias=True), v2.ToDtype(torch.float32, scale=True)]
    )


def batch_mixer(
    mixup: float, cutmix: float, num_classes: int
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """MixUp and/or CutMix on a whole batch; labels become soft ``(B, C)`` targets.

    MixUp (Zhang et al., https://arxiv.org/abs/1710.09412) blends two images and their
    labels; CutMix (Yun et al., https://arxiv.org/abs/1905.04899) pastes a patch of one image
    into another, labels mixed by area. ``mixup`` and ``cutmix`` are the Beta(alpha, alpha)
    parameters; 0 turns one off. With both on, each batch uses one of them at random.
    """
    for key, value in (("mixup", mixup), ("cutmix", cutmix)):
        if value < 0:
            raise ConfigError(f"data.source.{key} must be 0 (off) or positive; received {value}.")
    chosen = []
    if mixup > 0:
        chosen.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix > 0:
        chosen.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    if not chosen:
        return None
    return chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)
