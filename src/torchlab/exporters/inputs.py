"""Input kinds: how a run's model input varies, so exporters stay model-agnostic.

An exporter sees only a model and an example input; the input kind (the run's featurizer
kind) says which axes are dynamic and which shapes verification runs at. A new model family
plugs in with no change here; a new kind of input (text, series) registers its own kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torchlab.registry import Registry

INPUT_KINDS = Registry("input kind", ["torchlab.exporters.inputs"])

# Batch sizes every export is verified at (1 and a prime catch batch-baked reshapes).
VERIFY_BATCH_SIZES = (1, 2, 7)


@dataclass(frozen=True)
class InputKind:
    """One kind of model input.

    Attributes:
        name: The featurizer kind (``tabular``, ``image``, ...).
        dynamic_axes: Axis -> name of each dynamic axis of the input (0 is the batch).
        dtype: The input tensor's dtype.
    """

    name: str
    dynamic_axes: dict[int, str]
    dtype: torch.dtype = torch.float32

    def example(self, input_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
        """A deterministic example input shaped ``(batch, *input_shape)``."""
        generator = torch.Generator().manual_seed(seed)
        if self.dtype.is_floating_point:
            return torch.randn((batch, *input_shape), generator=generator, dtype=self.dtype)
        return torch.randint(0, 100, (batch, *input_shape), generator=generator, dtype=self.dtype)

    def verification_inputs(self, input_shape: tuple[int, ...]) -> list[torch.Tensor]:
        """Inputs that exercise every dynamic axis: batch 1, 2 and 7 (and varied lengths)."""
        inputs = [self.example(input_shape, b, seed=b) for b in VERIFY_BATCH_SIZES]
        for axis in self.dynamic_axes:
            if axis == 0:
                continue
            for scale, seed in ((0.5, 11), (2.0, 12)):  # a shorter and a longer sequence
                shape = list(input_shape)
                shape[axis - 1] = max(1, int(shape[axis - 1] * scale))
                inputs.append(self.example(tuple(shape), 2, seed=seed))
        return inputs

    def to_dict(self, input_shape: tuple[int, ...]) -> dict[str, Any]:
        """The input schema stored in the sidecar JSON."""
        shape: list[int | str] = ["batch", *input_shape]
        for axis, name in self.dynamic_axes.items():
            shape[axis] = name
        return {"kind": self.name, "shape": shape, "dtype": str(self.dtype).removeprefix("torch.")}


@INPUT_KINDS.register("tabular")
def tabular() -> InputKind:
    """Rows of standardised features ``(B, F)``."""
    return InputKind("tabular", {0: "batch"})


@INPUT_KINDS.register("image")
def image() -> InputKind:
    """Images ``(B, C, H, W)``; the featurizer resizes every image to the trained size."""
    return InputKind("image", {0: "batch"})


@INPUT_KINDS.register("pixels")
def pixels() -> InputKind:
    """RGB pixels ``(B, 3, H, W)`` in [0, 1] at the trained size (segmentation, detection)."""
    return InputKind("pixels", {0: "batch"})


@INPUT_KINDS.register("text")
def text() -> InputKind:
    """Token ids ``(B, T)``: batch and sequence length both vary (padding id 0)."""
    return InputKind("text", {0: "batch", 1: "sequence"}, dtype=torch.int64)


@INPUT_KINDS.register("series")
def series() -> InputKind:
    """Forecasting windows ``(B, lookback, features)``; a forecast beyond the data comes from
    ``torchlab predict RUN_DIR --horizon N`` (the featurizer says so for input files)."""
    return InputKind("series", {0: "batch"})


def input_kind(name: str) -> InputKind:
    """The registered input kind for a featurizer kind."""
    return INPUT_KINDS.get(name, "featurizer kind").builder()
