"""Image sources small enough to hold in memory, and the featurizer for image files.

``digits`` is scikit-learn's 1,797 8x8 handwritten digits (offline, shipped with
scikit-learn). Pixels are scaled to [0, 1] and standardised with training-split
statistics; ``size`` upsamples them (e.g. to 32x32 for pretrained-style networks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from torchlab.data.base import DataBundle, DataSpec, SourceContext, TensorSplit
from torchlab.data.featurizers import FEATURIZERS
from torchlab.data.splits import split_indices
from torchlab.errors import DataError
from torchlab.registry import DATASETS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@FEATURIZERS.register("image")
class ImageFeaturizer:
    """Image files -> (N, C, H, W) float tensors: resize, scale to [0, 1], standardise."""

    kind: ClassVar[str] = "image"

    def __init__(self, *, size: tuple[int, int], channels: int, mean: float, std: float) -> None:
        self.size, self.channels, self.mean, self.std = tuple(size), channels, mean, std
        self.transform = v2.Compose(
            [
                v2.Resize(list(self.size), antialias=True),
                v2.Normalize([mean] * channels, [std] * channels),
            ]
        )

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] shaped (N, C, h, w) -> model inputs shaped (N, C, H, W)."""
        return self.transform(pixels)

    def load_inputs(self, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
        files = image_files(paths)
        pixels = torch.stack([read_image(f, self.channels) for f in files])
        return self.normalize(pixels), [str(f) for f in files]

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


def image_files(paths: list[Path]) -> list[Path]:
    """The image files named, with folders expanded to the images inside them (sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"Input '{path}' does not exist; check the path.")
    if not files:
        raise DataError(
            f"No image files found in {', '.join(map(str, paths))}; give .png or .jpg files."
        )
    return files


def read_image(path: Path, channels: int) -> torch.Tensor:
    """One image as (C, H, W) floats in [0, 1], converted to ``channels`` (1 or 3)."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"Image '{path}' cannot be read ({exc}); replace or remove the file."
        ) from None
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)


@DATASETS.register("digits")
def digits(context: SourceContext, /, *, size: int = 8) -> DataBundle:
    """scikit-learn's 8x8 digits as (1, size, size) images in 10 classes.

    Args:
        size: Height and width the 8x8 images are upsampled to (bilinear).
    """
    from sklearn.datasets import load_digits

    if context.target_kind != "categorical":
        raise DataError(
            f"Data source 'digits' holds class labels; use task classification, not a "
            f"task for {context.target_kind} targets."
        )
    raw = load_digits()
    pixels = torch.from_numpy(raw.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(raw.target.astype(np.int64))
    stratify = raw.target if context.stratify else None
    train, val, test = split_indices(
        len(labels), val=context.val, test=context.test, seed=context.seed, stratify=stratify
    )
    resized = v2.Resize([size, size], antialias=True)(pixels[train])
    featurizer = ImageFeaturizer(
        size=(size, size), channels=1, mean=resized.mean().item(), std=resized.std().item()
    )
    splits = {
        name: TensorSplit(featurizer.normalize(pixels[idx]), labels[idx])
        for name, idx in (("train", train), ("val", val), ("test", test))
    }
    spec = DataSpec(
        input_shape=(1, size, size),
        target_kind="categorical",
        class_names=tuple(str(c) for c in raw.target_names),
    )
    summary = {
        "source": "digits",
        "sizes": {k: len(v) for k, v in splits.items()},
        "class_counts": {
            k: np.bincount(v.target.numpy(), minlength=10).tolist() for k, v in splits.items()
        },
    }
    raw_pixels = {
        name: raw.data[idx] for name, idx in (("train", train), ("val", val), ("test", test))
    }
    return DataBundle(
        **splits, spec=spec, featurizer=featurizer, summary=summary, baseline_inputs=raw_pixels
    )
