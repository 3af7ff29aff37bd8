"""The featurizer of segmentation and detection runs: image files -> RGB pixels in [0, 1].

Segmentation and detection models normalise their inputs themselves (torchvision detectors
do it in their transform, the segmentation models here hold ImageNet statistics), so the
featurizer only reads and resizes: the pixels it returns can be drawn on directly for
prediction overlays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torchvision.transforms import v2

from torchlab.data.featurizers import FEATURIZERS
from torchlab.data.vision.files import read_images
from torchlab.data.vision.images import image_files, uint8_levels, uint8_to_inputs


@FEATURIZERS.register("pixels")
class PixelFeaturizer:
    """Image files -> ``(N, 3, H, W)`` floats in [0, 1] at the size the model was trained on.

    Attributes:
        sizes: Original ``(height, width)`` of each file of the last :meth:`load_inputs`,
            by id, so predictions can be mapped back to the files' own pixels.
        skipped: Files of the last :meth:`load_inputs` that could not be read, and why.
    """

    kind: ClassVar[str] = "pixels"

    def __init__(self, *, size: tuple[int, int], channels: int = 3) -> None:
        self.size, self.channels = (int(size[0]), int(size[1])), channels
        self.resize = v2.Resize(list(self.size), antialias=True)
        self.levels = uint8_levels(channels)[0, :, 0].numpy()  # (C, 256): each uint8 level's input
        self.sizes: dict[str, tuple[int, int]] = {}
        self.skipped: dict[str, str] = {}

    def load_inputs(
        self, paths: list[Path], on_error: str = "fail"
    ) -> tuple[torch.Tensor, list[str]]:
        images, ids, self.skipped = read_images(image_files(paths), self.channels, on_error)
        for file, image in zip(ids, images, strict=True):  # image: (C, h, w)
            self.sizes[file] = (image.shape[1], image.shape[2])
        return torch.stack([self.resize(image) for image in images]), ids

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] shaped (N, C, h, w) -> model inputs shaped (N, C, H, W)."""
        return self.resize(pixels)

    def uint8_to_inputs(self, images: list[np.ndarray]) -> torch.Tensor:
        """Decoded uint8 images ``(h, w, C)`` -> model inputs ``(N, C, H, W)`` in [0, 1]."""
        return uint8_to_inputs(images, self.levels, self.size, self.normalize)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": list(self.size), "channels": self.channels}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PixelFeaturizer:
        return cls(size=tuple(state["size"]), channels=state.get("channels", 3))
