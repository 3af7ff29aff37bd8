"""Pixel requests: segmentation and detection runs answer the images an image model takes.

The body is the image kind's (``{"images": ["<base64>", ...]}`` or a multipart upload), read
with its decoding and limits. Each image is resized to the model's size as ``torchlab
predict`` resizes it, so the answers are the command's:

- detection: ``{"detections": [{"box": [x0, y0, x1, y1], "label", "score"}, ...]}`` with
  the boxes in the pixels of the image as sent (the rows of ``predictions.csv``);
- segmentation: ``{"mask": "<base64 PNG>", "fractions": {class: share}}``, the mask of
  class indices (8-bit grayscale, mode ``L``) at the model's size, as the overlays are.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import torch

from torchlab.errors import DataError
from torchlab.serve.requests import (
    REQUEST_KINDS,
    Decoded,
    Limits,
    RequestKind,
    image,
    image_decoding,
)


@REQUEST_KINDS.register("pixels")
def pixels(predictor: Any, limits: Limits) -> RequestKind:
    """``{"images": [...]}`` like an image model; answered with boxes or a mask per image."""
    body = image(predictor, limits).model

    decode, files = image_decoding(predictor, limits, Decoded)  # each image's (h, w) kept
    answers = predictor.task.deployment.resolve("answers")  # boxes, masks, ...
    if answers is None:
        raise DataError(
            f"A {predictor.task.metric_kind} model does not take pixel inputs; serve a "
            "segmentation or detection run."
        )
    return RequestKind(body, decode, records=answers(predictor), files=files)


def detections(predictor: Any) -> Any:
    """The answer of a detector: its boxes per image, scaled back to the image's own size."""
    from torchlab.tasks.detection import box_rows

    names = predictor.spec.class_names

    def records(outputs: list[dict[str, torch.Tensor]], inputs: Any, sizes: Any) -> list[Any]:
        size, answers = tuple(inputs.shape[-2:]), []  # inputs (B, 3, H, W)
        for found, original in zip(outputs, sizes, strict=True):
            rows = box_rows(found, size, original, names)
            boxes = [
                {
                    "box": [r["x0"], r["y0"], r["x1"], r["y1"]],
                    "label": r["label"],
                    "score": r["score"],
                }
                for r in rows
            ]
            answers.append({"detections": boxes})
        return answers

    return records


def masks(predictor: Any) -> Any:
    """The answer of a segmentation model: the class-index mask and each class's share."""
    from torchlab.tasks.segmentation import class_fractions

    names = predictor.spec.class_names

    def records(outputs: torch.Tensor, inputs: Any, sizes: Any) -> list[Any]:
        labels = outputs.argmax(dim=1)  # (B, H, W)
        fractions = class_fractions(labels, len(names))  # (B, C)
        return [
            {"mask": png_mask(label), "fractions": dict(zip(names, shares.tolist(), strict=True))}
            for label, shares in zip(labels, fractions, strict=True)
        ]

    return records


def png_mask(label: torch.Tensor) -> str:
    """Class indices (H, W) as a base64 8-bit grayscale PNG (classes fit in 0-255)."""
    from PIL import Image

    buffer = io.BytesIO()
    mask = Image.fromarray(label.to(torch.uint8).cpu().numpy())  # (H, W) uint8: mode L
    mask.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()
