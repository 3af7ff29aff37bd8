"""The report's analysis of a detection run: average precision per class and drawn boxes."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.detection import MeanAveragePrecision

from torchlab.report.analysis import Analysis, _plt, png
from torchlab.tasks.detection import draw_detections

SHOWN = 6  # test images drawn in the figure


@torch.inference_mode()
def detection(parts: Any, loader: Any) -> Analysis:
    """AP@0.5 and AP@[.5:.95] of each class on the test split, and test images with boxes."""
    model, device = parts.model, parts.device
    names = list(parts.bundle.spec.class_names)
    at_50 = MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True)
    coco = MeanAveragePrecision(class_metrics=True)
    model.eval()
    counts = torch.zeros(len(names), dtype=torch.int64)
    shown: list[tuple[torch.Tensor, dict, dict]] = []
    for batch in loader.epoch(0):
        batch = batch.to(device)
        found = [{k: v.cpu() for k, v in d.items()} for d in model(batch.inputs)]
        target = [{k: v.cpu() for k, v in d.items()} for d in batch.target]
        at_50.update(found, target)
        coco.update(found, target)
        for t in target:
            counts += torch.bincount(t["labels"], minlength=len(names))
        for image, f, t in zip(batch.inputs, found, target, strict=True):
            if len(shown) < SHOWN:
                shown.append((image.cpu(), f, t))
    out = Analysis()
    out.tables["average precision per class (test)"] = per_class(
        at_50.compute(), coco.compute(), names, counts
    )
    if shown:
        out.figures["Test images: predicted boxes (score >= 0.5), true boxes in green"] = boxes(
            shown, names
        )
    return out


def per_class(
    at_50: dict, coco: dict, names: list[str], counts: torch.Tensor
) -> list[dict[str, Any]]:
    classes = at_50["classes"].reshape(-1).tolist()
    ap50 = dict(zip(classes, at_50["map_per_class"].reshape(-1).tolist(), strict=True))
    ap = dict(zip(classes, coco["map_per_class"].reshape(-1).tolist(), strict=True))
    return [
        {"class": names[k], "ap@0.5": ap50.get(k, float("nan")),
         "ap@[.5:.95]": ap.get(k, float("nan")), "true boxes": int(counts[k])}
        for k in range(1, len(names))
    ]  # fmt: skip


def boxes(shown: list[tuple[torch.Tensor, dict, dict]], names: list[str]) -> bytes:
    from torchvision.utils import draw_bounding_boxes

    plt = _plt()
    fig, axes = plt.subplots(1, len(shown), figsize=(2.4 * len(shown), 2.6), squeeze=False)
    for ax, (image, found, target) in zip(axes[0], shown, strict=False):
        drawn = draw_detections(image, found, tuple(names))
        if len(target["boxes"]):
            drawn = draw_bounding_boxes(drawn, target["boxes"], colors="lime", width=1)
        ax.imshow(drawn.permute(1, 2, 0).numpy())
        ax.axis("off")
    return png(fig)
