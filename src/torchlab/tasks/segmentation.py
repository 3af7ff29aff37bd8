"""Semantic segmentation: one class per pixel; the model outputs logits (B, C, H, W).

Targets are class indices (B, H, W) with ``255`` for pixels to ignore (VOC's borders).
The default loss adds soft Dice to cross-entropy: cross-entropy trains every pixel, Dice
weighs each class by its overlap whatever its area, so small objects are not drowned by
the background. Mean IoU and Dice come from torchmetrics' multiclass Jaccard index and F1
computed over all pixels (F1 over pixels is the Dice coefficient); the
``torchmetrics.segmentation`` classes have no ignore index, so they cannot skip 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

from torchlab.errors import ConfigError
from torchlab.registry import LOSSES, METRICS, TASKS
from torchlab.tasks.base import Deployment, MetricContext, Task

IGNORE_INDEX = 255


class DiceCELoss(nn.Module):
    """``ce_weight * CE + dice_weight * (1 - mean soft Dice over classes)``.

    Soft Dice per class c: ``2 sum(p_c t_c) / (sum p_c + sum t_c)`` over the batch's pixels
    (Milletari et al., 2016, https://arxiv.org/abs/1606.04797); ignored pixels count in
    neither term.
    """

    def __init__(self, ce_weight: float, dice_weight: float, smooth: float) -> None:
        super().__init__()
        self.ce_weight, self.dice_weight, self.smooth = ce_weight, dice_weight, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # (B, C, H, W)
        ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
        if not self.dice_weight:
            return self.ce_weight * ce
        valid = (target != IGNORE_INDEX).unsqueeze(1)  # (B, 1, H, W)
        probs = logits.softmax(dim=1) * valid
        one_hot = F.one_hot(target.where(valid[:, 0], 0), logits.shape[1])  # (B, H, W, C)
        one_hot = one_hot.permute(0, 3, 1, 2).float() * valid  # (B, C, H, W)
        dims = (0, 2, 3)
        overlap = (probs * one_hot).sum(dims)  # (C,)
        total = probs.sum(dims) + one_hot.sum(dims)
        dice = (2 * overlap + self.smooth) / (total + self.smooth)
        return self.ce_weight * ce + self.dice_weight * (1 - dice.mean())


@LOSSES.register("dice_ce")
def dice_ce(*, ce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0) -> nn.Module:
    """Cross-entropy plus soft Dice on per-pixel logits (B, C, H, W); 255 is ignored.

    Args:
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the Dice term (0 gives plain cross-entropy).
        smooth: Added to Dice's numerator and denominator so empty classes stay finite.
    """
    return DiceCELoss(ce_weight, dice_weight, smooth)


def _segmentation_only(context: MetricContext, name: str) -> None:
    if context.kind != "segmentation":
        raise ConfigError(f"Metric '{name}' is for task segmentation; this task is {context.kind}.")


@METRICS.register("mean_iou")
def mean_iou(context: MetricContext, /) -> Metric:
    """Intersection over union per class, averaged over classes (background included)."""
    _segmentation_only(context, "mean_iou")
    return MulticlassJaccardIndex(context.num_classes, average="macro", ignore_index=IGNORE_INDEX)


@METRICS.register("dice")
def dice(context: MetricContext, /) -> Metric:
    """Dice coefficient (F1 over pixels) per class, averaged over classes."""
    _segmentation_only(context, "dice")
    return MulticlassF1Score(context.num_classes, average="macro", ignore_index=IGNORE_INDEX)


@METRICS.register("iou_per_class")
def iou_per_class(context: MetricContext, /) -> Metric:
    """IoU of each class (reported at test time)."""
    _segmentation_only(context, "iou_per_class")
    return MulticlassJaccardIndex(context.num_classes, average="none", ignore_index=IGNORE_INDEX)


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """The VOC palette colour of each class index (what mask PNGs show)."""
    from torchlab.data.vision.shapes import voc_palette

    palette = voc_palette()
    return [tuple(palette[3 * k : 3 * k + 3]) for k in range(num_classes)]  # type: ignore[misc]


def overlay(
    image: torch.Tensor, label: torch.Tensor, num_classes: int, alpha: float = 0.75
) -> torch.Tensor:
    """Classes ``label`` (H, W) drawn over ``image`` (3, H, W) in [0, 1] -> uint8 (3, H, W);
    the background (class 0) is left uncoloured."""
    from torchvision.utils import draw_segmentation_masks

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    masks = F.one_hot(label.cpu().long(), num_classes).permute(2, 0, 1).bool()  # (C, H, W)
    colours = class_colours(num_classes)
    return draw_segmentation_masks(pixels, masks[1:], alpha=alpha, colors=colours[1:])


def save_png(pixels: torch.Tensor, path: Path) -> None:
    """A uint8 (3, H, W) image as a PNG file."""
    from PIL import Image

    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(path)


def class_fractions(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The fraction of pixels of each class in class-index masks (N, H, W) -> (N, C)."""
    counts = F.one_hot(labels, num_classes).flatten(1, 2).sum(1).float()  # (N, C)
    return counts / labels[0].numel()


@TASKS.register("segmentation")
class Segmentation(Task):
    """A class index per pixel; outputs are logits (B, C, H, W), targets (B, H, W)."""

    target_kind = "categorical"
    metric_kind = "segmentation"
    default_loss = "dice_ce"
    default_metrics = ("mean_iou", "dice")
    report_metrics = ("iou_per_class",)
    higher_is_better = frozenset({"mean_iou", "dice", "iou_per_class"})
    deployment = Deployment(
        refuses={
            "mar": "A TorchServe archive's handler answers labels of images, rows and texts, "
            "not masks or boxes; export a segmentation model with --format torchscript, onnx "
            "or exported-program."
        },
        answers="torchlab.serve.pixels:masks",
        answer="torchlab.serve.answers:Mask",
        analysis="torchlab.report.segmentation:segmentation",
    )

    @property
    def num_outputs(self) -> int:
        return self.spec.num_classes  # one logit per class, two classes included

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().softmax(dim=1)  # (B, C, H, W)

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"label": outputs.argmax(dim=1)}  # (B, H, W)

    def write_predictions(
        self,
        inputs: torch.Tensor,
        outputs: Any,
        ids: list[str],
        folder: Path | None,
        featurizer: Any,
    ) -> Any:
        """One row per image with the fraction of pixels of each class, and, with a folder,
        an overlay PNG per image (predicted classes over the image)."""
        import pandas as pd

        labels = outputs.argmax(dim=1)  # (N, H, W)
        names = self.spec.class_names
        fractions = class_fractions(labels, len(names))  # (N, C)
        frame = pd.DataFrame({"id": ids})
        for k, name in enumerate(names):
            frame[f"fraction_{name}"] = fractions[:, k].tolist()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            files = []
            for image, label, path in zip(inputs, labels, ids, strict=True):
                file = folder / f"{Path(path).stem}_overlay.png"
                save_png(overlay(image, label, len(names)), file)
                files.append(str(file))
            frame["overlay"] = files
            frame.to_csv(folder / "predictions.csv", index=False)
        return frame
