"""Object detection with detectors that compute their own losses (torchvision Faster R-CNN).

Inputs are lists of images and targets lists of ``{"boxes": (N, 4) XYXY, "labels": (N,)}``
with labels from 1. In training mode the detector returns a dict of losses (RPN objectness
and box regression, classifier and box regression of the RoI head), which the ``detector``
loss sums; in evaluation mode it returns boxes, labels and scores per image, scored with
torchmetrics' COCO-style mean average precision. An evaluation step also reports the
validation loss: the same images go through the training-mode forward pass once more,
with BatchNorm held in evaluation mode and the random proposal sampling drawn from a
forked random stream, so evaluation changes neither the model nor the training's draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision

from torchlab.data.base import Batch
from torchlab.errors import ConfigError
from torchlab.registry import LOSSES, METRICS, TASKS
from torchlab.tasks.base import Deployment, MetricContext, StepOutput, Task


class DetectorLoss(nn.Module):
    """The weighted sum of a detector's loss dict (all weights 1 by default)."""

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights.get(name, 1.0) * value for name, value in losses.items())  # type: ignore[return-value]


@LOSSES.register("detector")
def detector(*, weights: dict[str, float] | None = None) -> nn.Module:
    """Sum of the losses a detector returns in training mode.

    Args:
        weights: Factor per loss name (``loss_classifier``, ``loss_box_reg``,
            ``loss_objectness``, ``loss_rpn_box_reg``); unnamed ones count once.
    """
    return DetectorLoss(dict(weights or {}))


class BoxMAP(MeanAveragePrecision):
    """COCO mean average precision, keeping the scalar summaries epochs are logged with."""

    KEYS = ("map", "map_50", "map_75")

    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {k: v for k, v in super().compute().items() if k in self.KEYS}


@METRICS.register("map")
def mean_average_precision(context: MetricContext, /) -> Metric:
    """mAP@[.5:.95] (``map``), mAP@0.5 (``map_50``) and mAP@0.75 (``map_75``) of boxes."""
    if context.kind != "detection":
        raise ConfigError(f"Metric 'map' is for task detection; this task is {context.kind}.")
    return BoxMAP(box_format="xyxy", iou_type="bbox")


class _EvalBatchNorm:
    """Training-mode forward pass with BatchNorm layers in evaluation mode, restored after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.train()
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


@TASKS.register("detection")
class Detection(Task):
    """Boxes and classes of objects; the model is a torchvision-style detector."""

    target_kind = "categorical"
    metric_kind = "detection"
    default_loss = "detector"
    default_metrics = ("map",)
    higher_is_better = frozenset({"map", "map_50", "map_75"})
    # Lists of boxes per image: TorchScript only (the exportable's check says why).
    deployment = Deployment(
        exportable="torchlab.exporters.detection:detection_exportable",
        answers="torchlab.serve.pixels:detections",
        answer="torchlab.serve.answers:Boxes",
        analysis="torchlab.report.detection:detection",
    )

    @property
    def num_outputs(self) -> int:
        return self.spec.num_classes  # background included

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        losses = model(batch.inputs, batch.target)
        return StepOutput(self.loss_fn(losses), losses)

    def evaluation_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        detections = model(batch.inputs)
        with torch.random.fork_rng(devices=[]), _EvalBatchNorm(model):
            loss = self.loss_fn(model(batch.inputs, batch.target))
        return StepOutput(loss.detach(), detections)

    def update_metrics(self, metrics: Any, outputs: Any, batch: Batch) -> None:
        metrics.update(outputs, batch.target)

    def scores(self, outputs: Any) -> Any:
        return outputs

    def predict(self, outputs: Any) -> dict[str, torch.Tensor]:
        raise ConfigError("Detection predictions are boxes, not columns; see write_predictions.")

    def write_predictions(
        self,
        inputs: torch.Tensor,
        outputs: Any,
        ids: list[str],
        folder: Path | None,
        featurizer: Any,
    ) -> Any:
        """One row per box (in the file's own pixels) with class and score, and, with a
        folder, an overlay PNG per image with the boxes drawn."""
        import pandas as pd

        names = self.spec.class_names
        rows = []
        for image, found, path in zip(inputs, outputs, ids, strict=True):
            original = getattr(featurizer, "sizes", {}).get(path, image.shape[1:])
            found_rows = box_rows(found, tuple(image.shape[1:]), tuple(original), names)
            rows.extend({"id": path, **row} for row in found_rows)
        columns = ["id", "label", "score", "x0", "y0", "x1", "y1"]
        frame = pd.DataFrame(rows, columns=columns)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            for image, found, path in zip(inputs, outputs, ids, strict=True):
                drawn = draw_detections(image, found, names)
                save_png(drawn, folder / f"{Path(path).stem}_boxes.png")
            frame.to_csv(folder / "predictions.csv", index=False)
        return frame


def box_rows(
    found: dict[str, torch.Tensor],
    size: tuple[int, int],
    original: tuple[int, int],
    names: tuple[str, ...],
) -> list[dict[str, Any]]:
    """One detector's boxes for one image as rows of label, score and ``x0, y0, x1, y1`` in
    the pixels of the ``original`` (height, width) image that was resized to ``size``."""
    height, width = original
    scale = torch.tensor([width / size[1], height / size[0]] * 2)
    rows = []
    for box, label, score in zip(found["boxes"], found["labels"], found["scores"], strict=True):
        x0, y0, x1, y1 = (box.cpu() * scale).tolist()
        rows.append({"label": names[int(label)], "score": float(score),
                     "x0": x0, "y0": y0, "x1": x1, "y1": y1})  # fmt: skip
    return rows


def draw_detections(
    image: torch.Tensor,
    found: dict[str, torch.Tensor],
    names: tuple[str, ...],
    threshold: float = 0.5,
) -> torch.Tensor:
    """Boxes scoring at least ``threshold`` drawn with ``class score`` labels -> uint8 (3, H, W)."""
    from torchvision.utils import draw_bounding_boxes

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    keep = found["scores"] >= threshold
    if not keep.any():
        return pixels
    labels = [
        f"{names[int(k)]} {s:.2f}"
        for k, s in zip(found["labels"][keep], found["scores"][keep], strict=True)
    ]
    return draw_bounding_boxes(pixels, found["boxes"][keep].cpu(), labels, colors="yellow", width=2)


def save_png(pixels: torch.Tensor, path: Path) -> None:
    """A uint8 (3, H, W) image as a PNG file."""
    from PIL import Image

    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(path)
