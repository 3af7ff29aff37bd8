"""Metric builders over torchmetrics; every metric stays on the device until logged."""

from __future__ import annotations

import torchmetrics as tm
from torchmetrics import Metric

from torchlab.errors import ConfigError
from torchlab.registry import METRICS
from torchlab.tasks.base import MetricContext
from torchlab.tasks.calibration import BINS, BrierScore


def _classification(context: MetricContext, name: str, **kwargs: object) -> Metric:
    if context.kind == "regression":
        raise ConfigError(
            f"Metric '{name}' is for classification; use mae, rmse, mse or r2 for regression."
        )
    task = context.kind
    if task == "binary":
        return getattr(tm.classification, f"Binary{name}")(**kwargs)
    if task == "multilabel":
        return getattr(tm.classification, f"Multilabel{name}")(
            num_labels=context.num_classes, **kwargs
        )
    return getattr(tm.classification, f"Multiclass{name}")(
        num_classes=context.num_classes, **kwargs
    )


def _macro(context: MetricContext) -> dict[str, str]:
    return {} if context.kind == "binary" else {"average": "macro"}


@METRICS.register("accuracy")
def accuracy(context: MetricContext, /) -> Metric:
    """Share of correct predictions (micro-averaged)."""
    kwargs = {"average": "micro"} if context.kind == "multiclass" else {}
    return _classification(context, "Accuracy", **kwargs)


@METRICS.register("f1")
def f1(context: MetricContext, /) -> Metric:
    """Macro-averaged F1: every class counts the same, however rare."""
    return _classification(context, "F1Score", **_macro(context))


@METRICS.register("precision")
def precision(context: MetricContext, /) -> Metric:
    return _classification(context, "Precision", **_macro(context))


@METRICS.register("recall")
def recall(context: MetricContext, /) -> Metric:
    return _classification(context, "Recall", **_macro(context))


@METRICS.register("auroc")
def auroc(context: MetricContext, /) -> Metric:
    """Area under the ROC curve (macro one-vs-rest for several classes)."""
    return _classification(context, "AUROC", **_macro(context))


@METRICS.register("confusion_matrix")
def confusion_matrix(context: MetricContext, /) -> Metric:
    """Counts of (true, predicted) pairs; reported at test time, not logged per epoch."""
    return _classification(context, "ConfusionMatrix")


def _calibration(context: MetricContext, name: str) -> None:
    if context.kind not in ("multiclass", "binary", "multilabel"):
        raise ConfigError(
            f"Metric '{name}' scores the probabilities of a classification, binary or "
            "multilabel task; remove it from task.metrics."
        )


@METRICS.register("ece")
def ece(context: MetricContext, /) -> Metric:
    """Expected calibration error over 10 equal-width confidence bins: of the top label's
    probability (multi-class), or of the positive class's (binary; multilabel: of each
    label's, every label of every sample one binary prediction). Lower is better."""
    _calibration(context, "ece")
    if context.kind == "multilabel":  # torchmetrics has no multilabel calibration error
        return tm.classification.BinaryCalibrationError(n_bins=BINS, norm="l1")
    return _classification(context, "CalibrationError", n_bins=BINS, norm="l1")


@METRICS.register("brier")
def brier(context: MetricContext, /) -> Metric:
    """Mean Brier score: squared error of the probabilities against the one-hot label
    (summed over classes), of the positive class's probability (binary), or of each label's
    (multilabel, summed over labels). Lower is better."""
    _calibration(context, "brier")
    return BrierScore()


def _regression(
    context: MetricContext, name: str, metric: type[Metric], **kwargs: object
) -> Metric:
    if context.kind != "regression":
        raise ConfigError(
            f"Metric '{name}' is for regression; use accuracy, f1, precision, recall or auroc."
        )
    return metric(**kwargs)


@METRICS.register("mae")
def mae(context: MetricContext, /) -> Metric:
    return _regression(context, "mae", tm.MeanAbsoluteError, num_outputs=context.num_outputs)


@METRICS.register("mse")
def mse(context: MetricContext, /) -> Metric:
    return _regression(context, "mse", tm.MeanSquaredError, num_outputs=context.num_outputs)


@METRICS.register("rmse")
def rmse(context: MetricContext, /) -> Metric:
    return _regression(
        context, "rmse", tm.MeanSquaredError, squared=False, num_outputs=context.num_outputs
    )


@METRICS.register("r2")
def r2(context: MetricContext, /) -> Metric:
    return _regression(context, "r2", tm.R2Score, multioutput="uniform_average")
