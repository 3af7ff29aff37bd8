"""Image sources small enough to hold in memory, and the featurizer for image files.

``digits`` is scikit-learn's 1,797 8x8 handwritten digits (offline, shipped with
scikit-learn). Pixels are scaled to [0, 1] and standardised with training-split
statistics (or ImageNet's, for a pretrained backbone); ``size`` upsamples them (e.g. to
64x64 for pretrained networks), ``channels: 3`` repeats the gray channel into RGB and
``per_class`` keeps only that many training images per class (few-shot learning).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from torchlab.data.base import DataBundle, DataSpec, SourceContext, TensorSplit
from torchlab.data.featurizers import FEATURIZERS
from torchlab.data.splits import split_indices
from torchlab.data.vision.files import IMAGE_SUFFIXES, image_files, read_image, read_images
from torchlab.data.vision.transforms import fixed_statistics
from torchlab.errors import DataError
from torchlab.registry import DATASETS

__all__ = ["IMAGE_SUFFIXES", "ImageFeaturizer", "digits", "image_files", "read_image"]


def uint8_to_inputs(
    images: list[np.ndarray],
    levels: np.ndarray,
    size: tuple[int, int],
    normalize: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Decoded uint8 images ``(h, w)`` or ``(h, w, C)`` -> model inputs ``(N, C, H, W)``.

    Images already at the model's ``size`` are looked up in ``levels``, the ``(C, 256)``
    inputs ``normalize`` gives each uint8 level: the same floats as scaling to [0, 1] and
    normalising (both are elementwise), from one table lookup per channel and no float
    intermediates, which is what a server decoding small images spends its time on. Others
    are scaled and passed through ``normalize``, which resizes them.
    """
    channels = levels.shape[0]
    if all(image.shape[:2] == size for image in images):
        inputs = np.empty((len(images), channels, *size), dtype=np.float32)
        for n, image in enumerate(images):
            for c in range(channels):
                np.take(levels[c], image if image.ndim == 2 else image[..., c], out=inputs[n, c])
        return torch.from_numpy(inputs)
    pixels = [torch.from_numpy(i).view(*i.shape[:2], -1).permute(2, 0, 1) for i in images]
    if len({p.shape for p in pixels}) == 1:  # one resize call for them all
        return normalize(torch.stack(pixels).float().div_(255.0))
    return torch.cat([normalize(p.unsqueeze(0).float().div_(255.0)) for p in pixels])


def uint8_levels(channels: int) -> torch.Tensor:
    """``(1, channels, 1, 256)``: the 256 uint8 levels scaled to [0, 1] as images are."""
    return torch.arange(256, dtype=torch.float32).div_(255.0).expand(1, channels, 1, 256)


def _per_channel(value: float | Sequence[float], channels: int) -> list[float]:
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    return values * channels if len(values) == 1 else values


@FEATURIZERS.register("image")
class ImageFeaturizer:
    """Image files -> (N, C, H, W) float tensors: resize, scale to [0, 1], standardise.

    ``mean`` and ``std`` are one number for every channel or one per channel (ImageNet's
    for a pretrained backbone).
    """

    kind: ClassVar[str] = "image"
    skipped: dict[str, str]  # files of the last load_inputs that could not be read -> why

    def __init__(
        self,
        *,
        size: tuple[int, int],
        channels: int,
        mean: float | Sequence[float],
        std: float | Sequence[float],
    ) -> None:
        self.size, self.channels = tuple(size), channels
        self.mean, self.std = _per_channel(mean, channels), _per_channel(std, channels)
        self.skipped = {}
        # (C, 256): the model input of each uint8 level of each channel
        self.levels = F.normalize(uint8_levels(channels), self.mean, self.std)[0, :, 0].numpy()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] shaped (N, C, h, w) -> model inputs shaped (N, C, H, W).

        The functional kernels, as ``v2.Resize`` and ``v2.Normalize`` call them, without the
        transforms' per-call dispatch (a server calls this once per request).
        """
        if tuple(pixels.shape[-2:]) != self.size:  # Resize to the same size is the identity
            pixels = F.resize(pixels, list(self.size), antialias=True)
        return F.normalize(pixels, self.mean, self.std)

    def uint8_to_inputs(self, images: list[np.ndarray]) -> torch.Tensor:
        """Decoded uint8 images ``(h, w)`` or ``(h, w, C)`` -> model inputs ``(N, C, H, W)``,
        equal to :meth:`normalize` of their pixels in [0, 1] (see :func:`uint8_to_inputs`)."""
        return uint8_to_inputs(images, self.levels, self.size, self.normalize)

    def load_inputs(
        self, paths: list[Path], on_error: str = "fail"
    ) -> tuple[torch.Tensor, list[str]]:
        """Inputs of the image files and folders named; ``on_error="skip"`` leaves unreadable
        files out and lists them in :attr:`skipped`."""
        images, ids, self.skipped = read_images(image_files(paths), self.channels, on_error)
        pixels = [self.normalize(image.unsqueeze(0))[0] for image in images]
        return torch.stack(pixels), ids

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "size": list(self.size),
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ImageFeaturizer:
        return cls(
            size=tuple(state["size"]),
            channels=state["channels"],
            mean=state["mean"],
            std=state["std"],
        )


def few_shot(index: np.ndarray, labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """The first ``per_class`` indices of each class in a seeded shuffle of ``index``."""
    if per_class is None:
        return index
    order = np.random.default_rng(seed).permutation(index)
    kept = [order[labels[order] == c][:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(kept))


@DATASETS.register("digits")
def digits(
    context: SourceContext,
    /,
    *,
    size: int = 8,
    channels: Literal[1, 3] = 1,
    per_class: int | None = None,
    normalize: Literal["auto", "dataset", "imagenet"] = "auto",
) -> DataBundle:
    """scikit-learn's 8x8 digits as (channels, size, size) images in 10 classes.

    Args:
        size: Height and width the 8x8 images are upsampled to (bilinear).
        channels: 1 (gray) or 3 (the gray channel repeated, for RGB backbones).
        per_class: Keep only this many training images per class (few-shot); val and
            test stay whole.
        normalize: ``dataset`` (training-split mean and std), ``imagenet`` (the statistics
            ImageNet-pretrained weights expect) or ``auto`` (imagenet when the model loads
            ImageNet weights, else dataset).
    """
    from sklearn.datasets import load_digits

    if context.target_kind != "categorical":
        raise DataError(
            f"Data source 'digits' holds class labels; use task classification, not a "
            f"task for {context.target_kind} targets."
        )
    if per_class is not None and per_class < 1:
        raise DataError(f"data.source.per_class must be at least 1; received {per_class}.")
    raw = load_digits()
    pixels = torch.from_numpy(raw.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    pixels = pixels.expand(-1, channels, -1, -1)  # (N, C, 8, 8)
    labels = torch.from_numpy(raw.target.astype(np.int64))
    stratify = raw.target if context.stratify else None
    train, val, test = split_indices(
        len(labels), val=context.val, test=context.test, seed=context.seed, stratify=stratify,
        fold=context.fold,
    )  # fmt: skip
    train = few_shot(train, raw.target, per_class, context.seed)
    fixed = fixed_statistics(normalize, context.needs, channels)
    if fixed is not None:
        mean, std = fixed
    else:
        resized = F.resize(pixels[train], [size, size], antialias=True)
        mean, std = resized.mean().item(), resized.std().item()
    featurizer = ImageFeaturizer(size=(size, size), channels=channels, mean=mean, std=std)
    splits = {
        name: TensorSplit(featurizer.normalize(pixels[idx]), labels[idx])
        for name, idx in (("train", train), ("val", val), ("test", test))
    }
    spec = DataSpec(
        input_shape=(channels, size, size),
        target_kind="categorical",
        class_names=tuple(str(c) for c in raw.target_names),
    )
    summary = {
        "source": "digits",
        "sizes": {k: len(v) for k, v in splits.items()},
        "class_counts": {
            k: np.bincount(v.target.numpy(), minlength=10).tolist() for k, v in splits.items()
        },
        "normalization": {"mean": featurizer.mean, "std": featurizer.std},
    }
    raw_pixels = {
        name: raw.data[idx] for name, idx in (("train", train), ("val", val), ("test", test))
    }
    return DataBundle(
        **splits, spec=spec, featurizer=featurizer, summary=summary, baseline_inputs=raw_pixels
    )
