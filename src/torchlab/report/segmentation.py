"""The report's analysis of a segmentation run: per-class IoU and Dice, prediction overlays."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torchlab.report.analysis import Analysis, _plt, png
from torchlab.tasks.segmentation import IGNORE_INDEX, overlay

SHOWN = 6  # test images drawn in the overlay figure


@torch.inference_mode()
def segmentation(parts: Any, loader: Any) -> Analysis:
    """Per-class IoU, Dice and pixel share over the test split, and overlays of a few images."""
    model, task, device = parts.model, parts.task, parts.device
    names = list(parts.bundle.spec.class_names)
    classes = len(names)
    model.eval()
    matrix = torch.zeros(classes * classes, dtype=torch.int64)
    shown: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for batch in loader.epoch(0):
        batch = batch.to(device)
        labels = task.evaluation_step(model, batch).outputs.argmax(dim=1).cpu()  # (B, H, W)
        target = batch.target.cpu()
        valid = target != IGNORE_INDEX
        matrix += torch.bincount(target[valid] * classes + labels[valid], minlength=classes**2)
        for image, truth, pred in zip(batch.inputs.cpu(), target, labels, strict=True):
            if len(shown) < SHOWN:
                shown.append((image, truth, pred))
    out = Analysis()
    out.tables["per-class IoU and Dice (test)"] = per_class(
        matrix.view(classes, classes).numpy(), names
    )
    if shown:
        out.figures["Test images, true and predicted masks"] = overlays(shown, classes)
    return out


def per_class(matrix: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """IoU, Dice and share of true pixels of each class from a (true, predicted) matrix."""
    tp = np.diag(matrix).astype(float)
    fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
    total = max(1, int(matrix.sum()))
    rows = []
    for k, name in enumerate(names):
        union = tp[k] + fp[k] + fn[k]
        rows.append(
            {
                "class": name,
                "iou": tp[k] / union if union else float("nan"),
                "dice": 2 * tp[k] / (union + tp[k]) if union else float("nan"),
                "pixel share": float(matrix[k].sum() / total),
            }
        )
    return rows


def overlays(shown: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], classes: int) -> bytes:
    """Rows of (image, true mask, predicted mask) with the masks drawn over the image."""
    plt = _plt()
    fig, axes = plt.subplots(3, len(shown), figsize=(1.8 * len(shown), 5.6), squeeze=False)
    for col, (image, truth, pred) in enumerate(shown):
        pictures = (
            (image.clamp(0, 1) * 255).round().to(torch.uint8),
            overlay(image, truth.where(truth != IGNORE_INDEX, 0), classes),
            overlay(image, pred, classes),
        )
        for row, (picture, title) in enumerate(
            zip(pictures, ("image", "true", "predicted"), strict=True)
        ):
            axes[row, col].imshow(picture.permute(1, 2, 0).numpy())
            axes[row, col].axis("off")
            if col == 0:
                axes[row, col].set_title(title, fontsize=8, loc="left")
    return png(fig)
