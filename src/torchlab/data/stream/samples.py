"""What each task makes of a sample of image shards: its decoder (bytes to an item), spec,
featurizer and facts for the summary.

Segmentation samples, an image and its ``mask.png``, are decoded, checked and augmented
together as the ``mask-folder`` source does (:mod:`torchlab.data.vision.segmentation`).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torchvision import tv_tensors

from torchlab.data.base import DataSpec, SourceContext
from torchlab.data.vision.dataset import ImageOptions, Item
from torchlab.data.vision.files import ImageReadError, load_image, read_image
from torchlab.data.vision.pixels import PixelFeaturizer
from torchlab.data.vision.segmentation import MaskError, check_mask, read_mask, transforms
from torchlab.errors import DataError


class Decoder(Protocol):
    """Turns a sample's image and target bytes into an item; raises
    :class:`ImageReadError` for a sample that cannot be used."""

    entry: str  # the member beside the image that holds the target: cls, mask.png

    def __call__(self, image: bytes, target: bytes, where: str) -> Item: ...


@dataclass(frozen=True)
class ClassDecoder:
    """A classification sample: the image, transformed, and its class index."""

    transform: Any
    channels: int
    train: bool
    entry: str = "cls"

    def __call__(self, image: bytes, target: bytes, where: str) -> Item:
        try:
            label = int(target)
        except ValueError as exc:
            raise ImageReadError(where, f"has a bad cls ({exc})") from None
        pixels = load_image(io.BytesIO(image), self.channels)
        return Item(self.transform(pixels), label, self.train)


@dataclass(frozen=True)
class Setup:
    """What a task makes of the shards: each split's decoder, the spec, the featurizer, the
    batch mixer and its facts for the summary."""

    decoders: dict[str, Decoder]
    spec: DataSpec
    featurizer: Any
    summary: dict[str, Any]
    mixer: Any = None


# --- classification ----------------------------------------------------------------------


def classification_setup(
    names: list[str], options: ImageOptions, images: Iterator[bytes], context: SourceContext
) -> Setup:
    """Decoders, spec and featurizer of classification shards; ``images`` are the training
    images, in storage order, normalisation statistics are drawn from."""
    from torchlab.data.vision import transforms as T
    from torchlab.data.vision.images import ImageFeaturizer

    size, channels = options.size, options.channels
    fixed = T.fixed_statistics(options.normalize, context.needs, channels)
    mean, std = fixed or sample_statistics(images, channels)
    train = T.train_transform(options.augment, size, mean, std, options.hflip)
    test = T.eval_transform(size, mean, std)
    return Setup(
        decoders={
            "train": ClassDecoder(train, channels, True),
            "val": ClassDecoder(test, channels, False),
            "test": ClassDecoder(test, channels, False),
        },
        spec=DataSpec((channels, size, size), "categorical", tuple(names)),
        featurizer=ImageFeaturizer(size=(size, size), channels=channels, mean=mean, std=std),
        summary={"normalization": {"mean": mean, "std": std}, "augment": options.augment},
        mixer=T.batch_mixer(options.mixup, options.cutmix, len(names)),
    )


def sample_statistics(images: Iterator[bytes], channels: int,
                      count: int = 256) -> tuple[list[float], list[float]]:  # fmt: skip
    """Per-channel mean and std of the pixels of the first ``count`` training images (0-1 scale)."""
    total, squares, pixels = np.zeros(channels), np.zeros(channels), 0
    for encoded in itertools.islice(images, count):
        try:
            values = load_image(io.BytesIO(encoded), channels)
        except ImageReadError:
            continue  # counted when training meets it
        values = values.reshape(channels, -1).double().numpy() / 255.0
        total, squares = total + values.sum(1), squares + (values**2).sum(1)
        pixels += values.shape[1]
    if not pixels:
        raise DataError("No training image of the shards can be read; check the shards.")
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 1e-12))
    return mean.tolist(), std.tolist()


# --- segmentation ------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskDecoder:
    """An RGB image and its class-index mask, checked and transformed together."""

    transform: Any
    classes: int
    entry: str = "mask.png"

    def __call__(self, image: bytes, target: bytes, where: str) -> Item:
        pixels = read_image(io.BytesIO(image), 3)  # (3, H, W) in [0, 1]
        try:
            labels = read_mask(io.BytesIO(target), f"{where}.mask.png")
            check_mask(labels, where, (pixels.shape[2], pixels.shape[1]), self.classes)
        except MaskError as exc:
            raise ImageReadError(where, f"has a mask that {exc.reason}") from None
        pixels, mask = self.transform(
            tv_tensors.Image(pixels), tv_tensors.Mask(torch.from_numpy(labels))
        )
        return Item(pixels.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long(), False)


def segmentation_setup(
    names: list[str], size: int | None, images: Iterator[bytes], augment: str
) -> Setup:
    """Decoders, spec and featurizer of segmentation shards."""
    if augment not in ("none", "light", "standard"):
        raise DataError(
            f"Segmentation shards take data.source.augment none, light or standard, not '{augment}'."
        )
    if len(names) < 2:
        raise DataError(f"Segmentation needs at least 2 classes (with background); got {names}.")
    shape = (size, size) if size else first_size(images)
    decoders = {
        name: MaskDecoder(transforms(augment, shape, name == "train"), len(names))  # type: ignore[arg-type]
        for name in ("train", "val", "test")
    }
    return Setup(
        decoders=decoders,  # type: ignore[arg-type]
        spec=DataSpec((3, *shape), "categorical", class_names=tuple(names)),
        featurizer=PixelFeaturizer(size=shape),
        summary={"image_size": list(shape), "augment": augment},
    )


def first_size(images: Iterator[bytes], tries: int = 16) -> tuple[int, int]:
    """``(height, width)`` of the first readable training image."""
    for encoded in itertools.islice(images, tries):
        try:
            return tuple(load_image(io.BytesIO(encoded), 3).shape[1:])  # type: ignore[return-value]
        except ImageReadError:
            continue
    raise DataError(
        "No training image of the shards can be read to find their size; check the shards, "
        "or set data.source.size."
    )
