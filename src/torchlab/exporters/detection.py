"""What a detection run exports: its torchvision detector as TorchScript, checked box by box.

torchvision's Faster R-CNN scripts as a whole (``torch.jit.script`` then returns
``(losses, detections)``); :class:`DetectorOnBatch` gives the artefact the export contract's
batch tensor ``(B, 3, H, W)`` in [0, 1] and returns one ``{"boxes", "labels", "scores"}`` dict
per image, as the eager model does. The number of boxes per image is decided by the data (score
threshold and non-maximum suppression), so graph formats that fix shapes ahead of the data
(``torch.export``, ONNX through it) cannot hold the model; those formats, int8 quantisation and
TorchServe archives are refused with the reason (see :func:`check_format`).

Parity is checked on generated shapes scenes (:class:`SceneKind`), where a detector finds
boxes, with :func:`compare_detections`: the same number of boxes and labels per image, and
boxes and scores within tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.inputs import InputKind
from torchlab.exporters.sources import Exportable, graph_exportable
from torchlab.exporters.verify import Tolerance
from torchlab.run import Run

# Formats that hold a detector faithfully, and why each other one is refused.
DETECTION_FORMATS = ("torchscript",)
REFUSED = {
    "onnx": "the number of boxes per image depends on the data (score threshold and "
    "non-maximum suppression), which the torch.export-based ONNX exporter cannot trace (the "
    "deprecated traced exporter fixes the images per graph and is not checked here)",
    "exported-program": "the number of boxes per image depends on the data (score threshold "
    "and non-maximum suppression), which torch.export cannot hold in one graph",
    "mar": "the TorchServe handler answers labels of images, rows and texts, not boxes",
}
QUANTIZE_REASON = (
    "int8 weights move scores across the detector's score threshold and non-maximum "
    "suppression, so boxes appear and disappear instead of staying within a tolerance"
)


class DetectorOnBatch(nn.Module):
    """A torchvision detector on a batch tensor ``(B, 3, H, W)``: one dict of boxes per image."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        # The scripted detector warns once that it returns (losses, detections); this
        # module unpacks that tuple, so the warning would only confuse users of the artefact.
        detector._has_warned = True

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        found = self.detector(list(images.unbind(0)))
        if torch.jit.is_scripting():  # scripted detectors return (losses, detections)
            return found[1]
        return found


@dataclass(frozen=True)
class SceneKind(InputKind):
    """Generated shapes scenes (textured backgrounds with coloured shapes) in [0, 1]: random
    noise gives a detector nothing to find, and parity on zero boxes proves nothing."""

    def example(self, input_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
        from torchlab.data.vision.shapes import draw_scene

        _, height, width = input_shape
        rng = np.random.default_rng(seed)
        images = [draw_scene(rng, max(height, width), 3)[0][:height, :width] for _ in range(batch)]
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (B, 3, H, W)
        return pixels.to(self.dtype) / 255


def compare_detections(
    expected: list[dict[str, torch.Tensor]],
    got: list[dict[str, torch.Tensor]],
    inputs: torch.Tensor,
    tolerance: Tolerance,
) -> dict[str, Any]:
    """One verification case: per image the same boxes, in order, with the same labels.

    Raises:
        ExportError: An image's box count or labels differ (no tolerance makes them close).
    """
    if len(got) != len(expected):
        raise ExportError(
            f"The exported detector returns {len(got)} results for {len(expected)} images; "
            f"the model cannot be exported faithfully, use --format {DETECTION_FORMATS[0]}."
        )
    errors, scales = [0.0], [0.0]
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        if len(have["boxes"]) != len(want["boxes"]) or not torch.equal(
            have["labels"], want["labels"]
        ):
            raise ExportError(
                f"The exported detector finds {len(have['boxes'])} boxes in image {index} of "
                f"a batch shaped {tuple(inputs.shape)}, the eager model {len(want['boxes'])} "
                "(or other labels); the model cannot be exported faithfully in this format."
            )
        for name in ("boxes", "scores"):
            if len(want[name]):
                errors.append((have[name].float() - want[name].float()).abs().max().item())
                scales.append(want[name].abs().max().item())
    return {
        "shape": list(inputs.shape),
        "max_abs_error": max(errors),
        "bound": tolerance.atol + tolerance.rtol * max(scales),
        "boxes": [len(found["boxes"]) for found in expected],
    }


def check_format(format: str, quantize: str | None) -> None:
    """Refuse, with the reason, a format or quantisation that cannot hold a detector."""
    works = ", ".join(DETECTION_FORMATS)
    if format in REFUSED:
        raise ExportError(
            f"A detector cannot be exported to {format}: {REFUSED[format]}; use --format {works}."
        )
    if quantize is not None:
        raise ExportError(
            f"A detector cannot be quantised to int8 faithfully: {QUANTIZE_REASON}; export "
            f"it without --quantize (--format {works})."
        )


def detection_exportable(run: Run, model: nn.Module) -> Exportable:
    """The run's detector on batch tensors, verified on shapes scenes box by box."""
    exportable = graph_exportable(run, model)
    kind = SceneKind(exportable.kind.name, dict(exportable.kind.dynamic_axes))
    output = {
        "shape": ["batch", {"boxes": ["n", 4], "labels": ["n"], "scores": ["n"]}],
        "meaning": "one dict per image: boxes (x0, y0, x1, y1) in pixels of the model input, "
        "labels indexing class_names (0 is the background, never returned), scores in [0, 1]",
    }
    return replace(
        exportable,
        model=DetectorOnBatch(model).eval(),
        kind=kind,
        description={**exportable.description, "output": output},
        reference=None,
        compare=compare_detections,
        check=check_format,
    )
