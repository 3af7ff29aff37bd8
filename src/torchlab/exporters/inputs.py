"""Input kinds: how a run's model input varies, so exporters stay model-agnostic.

An exporter sees only a model and an example input; the input kind (the run's featurizer
kind) says which axes are dynamic and which shapes verification runs at. A new model family
plugs in with no change here; a new kind of input (text, series) registers its own kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import torch

from torchlab.registry import Registry

INPUT_KINDS = Registry("input kind", ["torchlab.exporters.inputs"])

# Batch sizes every export is verified at (1 and a prime catch batch-baked reshapes).
VERIFY_BATCH_SIZES = (1, 2, 7)

# One model input, or several named ones in the order of ``InputKind.names``.
Inputs: TypeAlias = "torch.Tensor | tuple[torch.Tensor, ...]"


def as_tuple(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    """Model inputs as the positional arguments of a module call."""
    return inputs if isinstance(inputs, tuple) else (inputs,)


@dataclass(frozen=True)
class InputKind:
    """One kind of model input.

    Attributes:
        name: The featurizer kind (``tabular``, ``image``, ...).
        dynamic_axes: Axis -> name of each dynamic axis of the input (0 is the batch).
        dtype: The input tensor's dtype.
        names: The graph's input names (one per positional model input).
        length_scales: Lengths verified along a varying axis, as fractions of the trained one.
    """

    name: str
    dynamic_axes: dict[int, str]
    dtype: torch.dtype = torch.float32
    names: tuple[str, ...] = ("input",)
    length_scales: tuple[float, ...] = (0.5, 2.0)

    def example(self, input_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
        """A deterministic example input shaped ``(batch, *input_shape)``."""
        generator = torch.Generator().manual_seed(seed)
        if self.dtype.is_floating_point:
            return torch.randn((batch, *input_shape), generator=generator, dtype=self.dtype)
        return torch.randint(0, 100, (batch, *input_shape), generator=generator, dtype=self.dtype)

    def verification_inputs(self, input_shape: tuple[int, ...]) -> list[Inputs]:
        """Inputs that exercise every dynamic axis: batch 1, 2 and 7 (and varied lengths)."""
        inputs = [self.example(input_shape, b, seed=b) for b in VERIFY_BATCH_SIZES]
        for axis in self.dynamic_axes:
            if axis == 0:
                continue
            for seed, scale in enumerate(self.length_scales, start=11):  # other lengths
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


@dataclass(frozen=True)
class TextKind(InputKind):
    """Token ids whose rows end in padding (id 0) at different places, as a padded batch of
    texts of different lengths does; lengths stay within the trained ``max_length``, which
    the featurizer truncates to; ids stay below ``vocab_size`` (a small vocabulary's
    embedding has no row 99)."""

    vocab_size: int = 100

    def example(self, input_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, max(2, self.vocab_size), (batch, *input_shape), generator=generator)
        length = input_shape[0]
        ends = torch.randint(1, length + 1, (batch,), generator=generator)
        ends[0] = length  # the longest row fills the batch, as padding to the longest does
        return ids.masked_fill(torch.arange(length)[None, :] >= ends[:, None], 0)


@INPUT_KINDS.register("text")
def text() -> InputKind:
    """Token ids ``(B, T)``: batch and sequence length both vary (padding id 0)."""
    return TextKind(
        "text", {0: "batch", 1: "sequence"}, dtype=torch.int64, length_scales=(0.5, 0.25)
    )


@dataclass(frozen=True)
class WindowKind(InputKind):
    """Forecasting windows as named inputs: ``past`` ``(B, lookback, past_width)`` and, when the
    run has known-future inputs, ``future`` ``(B, horizon, future_width)``; only the batch varies.

    Attributes:
        shapes: One sample's shape per input, in the order of ``names``.
        columns: The column names of each input's last axis, by input name.
    """

    shapes: tuple[tuple[int, ...], ...] = ()
    columns: dict[str, list[str]] | None = None

    def example(
        self, input_shape: tuple[int, ...], batch: int = 2, seed: int = 0
    ) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed)
        return tuple(torch.randn((batch, *shape), generator=generator) for shape in self.shapes)

    def to_dict(self, input_shape: tuple[int, ...]) -> dict[str, Any]:
        columns = self.columns or {}
        inputs = [
            {"name": name, "shape": ["batch", *shape], "dtype": "float32",
             "columns": columns.get(name, [])}
            for name, shape in zip(self.names, self.shapes, strict=True)
        ]  # fmt: skip
        return {"kind": self.name, "inputs": inputs}


@INPUT_KINDS.register("series")
def series() -> InputKind:
    """Forecasting windows ``(B, lookback, features)``; a forecast beyond the data comes from
    ``torchlab predict RUN_DIR --horizon N`` (the featurizer says so for input files)."""
    return InputKind("series", {0: "batch"})


def input_kind(name: str) -> InputKind:
    """The registered input kind for a featurizer kind."""
    return INPUT_KINDS.get(name, "featurizer kind").builder()
