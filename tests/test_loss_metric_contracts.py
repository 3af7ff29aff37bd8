"""Contracts over the loss and metric registries: each registered name, built from the
registry with its defaults, gives the value its definition gives on a tiny input, worked out
here by hand (math.log and arithmetic), never by the library function under test.

A newly registered loss or metric fails ``test_every_*_has_a_case`` until it has a case here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from torchlab.config import Component
from torchlab.registry import LOSSES, METRICS
from torchlab.tasks.base import MetricContext


def t(values: Any) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def softmax(logits: list[float]) -> list[float]:
    exps = [math.exp(z) for z in logits]
    return [e / sum(exps) for e in exps]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# --- losses ----------------------------------------------------------------------------------

LOGITS = [[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]]  # two samples, three classes
LABELS = [1, 0]


def cross_entropy_by_hand() -> float:
    return mean([-math.log(softmax(z)[y]) for z, y in zip(LOGITS, LABELS, strict=True)])


def focal_by_hand(gamma: float = 2.0) -> float:
    p_t = [softmax(z)[y] for z, y in zip(LOGITS, LABELS, strict=True)]
    return mean([-((1 - p) ** gamma) * math.log(p) for p in p_t])


def bce_by_hand(logits: list[float], targets: list[int]) -> float:
    return mean(
        [
            -(y * math.log(sigmoid(x)) + (1 - y) * math.log(1 - sigmoid(x)))
            for x, y in zip(logits, targets, strict=True)
        ]
    )


# Per-pixel logits (B=1, C=2, H=1, W=3) and classes; the third pixel is ignored (255).
PIXEL_LOGITS = [[[[2.0, -1.0, 5.0]], [[0.0, 1.0, -5.0]]]]
PIXEL_LABELS = [[[0, 1, 255]]]


def dice_ce_by_hand(smooth: float = 1.0) -> float:
    pixels = [[2.0, 0.0], [-1.0, 1.0]]  # the two counted pixels' logits over the classes
    labels = [0, 1]
    ce = mean([-math.log(softmax(z)[y]) for z, y in zip(pixels, labels, strict=True)])
    probs = [softmax(z) for z in pixels]
    dice = []
    for c in (0, 1):
        overlap = sum(p[c] for p, y in zip(probs, labels, strict=True) if y == c)
        total = sum(p[c] for p in probs) + labels.count(c)
        dice.append((2 * overlap + smooth) / (total + smooth))
    return ce + (1 - mean(dice))


# Forecast (B=1, H=1, T=1, Q=3) at quantiles 0.1, 0.5, 0.9 for a target of 2:
# errors y - f are 1, -0.5, -2, so the pinball losses max(q e, (q - 1) e) are 0.1, 0.25, 0.2.
QUANTILE_BY_HAND = (0.1 + 0.25 + 0.2) / 3

# Point forecasts against targets: errors -0.5, 0, 1, -1.5.
PREDICTED, ACTUAL = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 5.5]
ABSOLUTE = (0.5 + 0 + 1 + 1.5) / 4
SQUARED = (0.25 + 0 + 1 + 2.25) / 4
HUBER = (0.5 * 0.25 + 0 + 0.5 * 1 + (1.5 - 0.5)) / 4  # quadratic up to delta 1, linear beyond


@dataclass(frozen=True)
class LossCase:
    inputs: tuple[Any, ...]
    expected: float


LOSS_CASES = {
    "cross_entropy": LossCase((t(LOGITS), torch.tensor(LABELS)), cross_entropy_by_hand()),
    "focal": LossCase((t(LOGITS), torch.tensor(LABELS)), focal_by_hand()),
    "bce": LossCase((t([0.0, 2.0, -1.0]), t([1, 0, 1])), bce_by_hand([0.0, 2.0, -1.0], [1, 0, 1])),
    "mse": LossCase((t(PREDICTED), t(ACTUAL)), SQUARED),
    "l1": LossCase((t(PREDICTED), t(ACTUAL)), ABSOLUTE),
    "mae": LossCase((t(PREDICTED), t(ACTUAL)), ABSOLUTE),
    "huber": LossCase((t(PREDICTED), t(ACTUAL)), HUBER),
    "quantile": LossCase((t([[[[1.0, 2.5, 4.0]]]]), t([[[2.0]]])), QUANTILE_BY_HAND),
    "dice_ce": LossCase((t(PIXEL_LOGITS), torch.tensor(PIXEL_LABELS)), dice_ce_by_hand()),
    # A detector returns its own losses in training mode; the loss sums them.
    "detector": LossCase(({"loss_classifier": t(0.5), "loss_box_reg": t(0.25)},), 0.75),
}


def test_every_registered_loss_has_a_case() -> None:
    assert set(LOSSES.describe()["names"]) == set(LOSS_CASES)


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_loss_matches_its_definition(name: str) -> None:
    case = LOSS_CASES[name]
    loss_fn = LOSSES.build(Component(name=name), "task.loss")
    value = loss_fn(*case.inputs)
    assert value.ndim == 0
    assert value.item() == pytest.approx(case.expected, rel=1e-5)


# --- metrics ---------------------------------------------------------------------------------

# Six samples, three classes; the predicted class (argmax) is 0, 1, 1, 1, 2, 0.
PROBS = [
    [0.7, 0.2, 0.1],
    [0.3, 0.6, 0.1],
    [0.1, 0.8, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.2, 0.7],
    [0.5, 0.1, 0.4],
]
CLASSES = [0, 0, 1, 1, 2, 2]
# Per class (tp, fp, fn): 0 -> (1, 1, 1), 1 -> (2, 1, 0), 2 -> (1, 0, 1).
PRECISION = [1 / 2, 2 / 3, 1]
RECALL = [1 / 2, 1, 1 / 2]
F1 = [2 * p * r / (p + r) for p, r in zip(PRECISION, RECALL, strict=True)]
# One-vs-rest AUROC: the share of (positive, negative) pairs that the scores order rightly.
# Class 0: 0.7 beats all four negatives, 0.3 beats three of 0.1, 0.2, 0.1, 0.5; class 1 alike;
# class 2: 0.7 and 0.4 beat every negative.
AUROC = [7 / 8, 7 / 8, 1]

# Pixels (B=1, H=1, W=5): the last one is ignored; per class (tp, fp, fn): 0 -> (2, 0, 1),
# 1 -> (1, 1, 0).
PIXELS_PREDICTED, PIXELS_TRUE = [[[0, 0, 1, 1, 1]]], [[[0, 0, 0, 1, 255]]]
IOU = [2 / 3, 1 / 2]
DICE = [4 / 5, 2 / 3]

# Targets for regression: mean 2.625, so the total sum of squares is 7.6875; errors
# -0.5, 0, 1, -1 give a residual sum of squares of 2.25.
TRUE_VALUES = [1.5, 2.0, 2.0, 5.0]
RESIDUAL = 0.25 + 0 + 1 + 1
TOTAL = sum((y - 2.625) ** 2 for y in TRUE_VALUES)


def boxes(*rows: list[float], scores: list[float] | None = None) -> list[dict[str, torch.Tensor]]:
    image = {"boxes": t(list(rows)), "labels": torch.ones(len(rows), dtype=torch.long)}
    if scores is not None:
        image["scores"] = t(scores)
    return [image]


@dataclass(frozen=True)
class MetricCase:
    context: MetricContext
    preds: Any
    target: Any
    expected: Any


MULTICLASS = MetricContext("multiclass", 3, 3)
REGRESSION = MetricContext("regression", 0, 1)
SEGMENTATION = MetricContext("segmentation", 2, 2)
DETECTION = MetricContext("detection", 2, 2)


# Four samples whose top-label confidences (0.75, 0.55, 0.85, 0.65) fall in four different
# tenths, so each is a bin of its own; right, wrong, right, wrong.
CONFIDENT = [
    [0.75, 0.15, 0.10],
    [0.35, 0.55, 0.10],
    [0.05, 0.85, 0.10],
    [0.15, 0.20, 0.65],
]
CONFIDENT_CLASSES = [0, 0, 1, 1]
# ECE: the mean over samples of |correct - confidence|, one sample per bin.
ECE = (abs(1 - 0.75) + abs(0 - 0.55) + abs(1 - 0.85) + abs(0 - 0.65)) / 4
# Brier: the squared distance of each probability row from its one-hot label, averaged.
BRIER = mean(
    [
        (0.75 - 1) ** 2 + 0.15**2 + 0.10**2,
        (0.35 - 1) ** 2 + 0.55**2 + 0.10**2,
        0.05**2 + (0.85 - 1) ** 2 + 0.10**2,
        0.15**2 + (0.20 - 1) ** 2 + 0.65**2,
    ]
)


def confident(expected: float) -> MetricCase:
    return MetricCase(MULTICLASS, t(CONFIDENT), torch.tensor(CONFIDENT_CLASSES), expected)


def classes(expected: Any) -> MetricCase:
    return MetricCase(MULTICLASS, t(PROBS), torch.tensor(CLASSES), expected)


def values(expected: float) -> MetricCase:
    return MetricCase(REGRESSION, t([1.0, 2.0, 3.0, 4.0]), t(TRUE_VALUES), expected)


def pixels(expected: Any) -> MetricCase:
    predicted, true = torch.tensor(PIXELS_PREDICTED), torch.tensor(PIXELS_TRUE)
    return MetricCase(SEGMENTATION, predicted, true, expected)


METRIC_CASES = {
    "accuracy": classes(4 / 6),
    "precision": classes(mean(PRECISION)),
    "recall": classes(mean(RECALL)),
    "f1": classes(mean(F1)),
    "auroc": classes(mean(AUROC)),
    # Rows are the true class, columns the predicted one.
    "confusion_matrix": classes([[1, 1, 0], [0, 2, 0], [1, 0, 1]]),
    "ece": confident(ECE),
    "brier": confident(BRIER),
    "mae": values((0.5 + 0 + 1 + 1) / 4),
    "mse": values(RESIDUAL / 4),
    "rmse": values(math.sqrt(RESIDUAL / 4)),
    "r2": values(1 - RESIDUAL / TOTAL),
    "mean_iou": pixels(mean(IOU)),
    "dice": pixels(mean(DICE)),
    "iou_per_class": pixels(IOU),
    # One box found at IoU 72/100: a match at the thresholds 0.5, 0.55, ..., 0.7 (5 of the 10
    # from 0.5 to 0.95), where its precision and recall are 1, and at none above.
    "map": MetricCase(
        DETECTION,
        boxes([0, 0, 10, 7.2], scores=[0.9]),
        boxes([0, 0, 10, 10]),
        {"map": 0.5, "map_50": 1.0, "map_75": 0.0},
    ),
}


def test_every_registered_metric_has_a_case() -> None:
    assert set(METRICS.describe()["names"]) == set(METRIC_CASES)


@pytest.mark.parametrize("name", sorted(METRIC_CASES))
def test_metric_matches_its_definition(name: str) -> None:
    case = METRIC_CASES[name]
    metric = METRICS.get(name).build({}, "task.metrics", case.context)  # as a task builds it
    metric.update(case.preds, case.target)
    value = metric.compute()
    if isinstance(case.expected, dict):
        assert set(value) == set(case.expected)
        for key, expected in case.expected.items():
            assert value[key].item() == pytest.approx(expected, abs=1e-6), key
    else:
        torch.testing.assert_close(value.double(), torch.tensor(case.expected).double())
