"""Classification: multi-class (softmax), binary (one logit) and multi-label (one logit per class)."""

from __future__ import annotations

import torch

from torchlab.registry import TASKS
from torchlab.tasks.base import Deployment, StepOutput, Task

_HIGHER = frozenset({"accuracy", "f1", "precision", "recall", "auroc", "average_precision"})

# A label and class probabilities per input, as served.
CLASSES = Deployment(answer="torchlab.serve.answers:Classes")


@TASKS.register("classification")
class MulticlassClassification(Task):
    """One label out of C classes; the model outputs C logits."""

    target_kind = "categorical"
    metric_kind = "multiclass"
    default_loss = "cross_entropy"
    default_metrics = ("accuracy", "f1", "precision", "recall", "auroc")
    higher_is_better = _HIGHER
    deployment = CLASSES
    report_metrics = ("confusion_matrix", "ece", "brier")

    def update_metrics(self, metrics, outputs, batch):  # type: ignore[no-untyped-def]
        # MixUp/CutMix give soft targets (B, C), which cross-entropy takes as they are;
        # metrics count the dominant class as the label.
        target = batch.target
        target = target.argmax(dim=-1) if target.ndim == 2 else target
        metrics.update(self.scores(outputs), target)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.softmax(dim=-1)

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        probs = self.scores(outputs.float())
        return {"label": probs.argmax(dim=-1), "probabilities": probs}


@TASKS.register("binary")
class BinaryClassification(Task):
    """Two classes with a single logit for the second one (BCE with logits)."""

    target_kind = "categorical"
    metric_kind = "binary"
    default_loss = "bce"
    default_metrics = ("accuracy", "f1", "precision", "recall", "auroc")
    higher_is_better = _HIGHER
    deployment = CLASSES
    report_metrics = ("confusion_matrix", "ece", "brier")

    @property
    def num_outputs(self) -> int:
        return 1

    def training_step(self, model, batch):  # type: ignore[no-untyped-def]
        outputs = model(batch.inputs).squeeze(-1)  # (B, 1) -> (B,)
        return StepOutput(self.loss_fn(outputs, batch.target.float()), outputs)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.sigmoid()

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        positive = self.scores(outputs.float().reshape(-1))
        return {
            "label": (positive > 0.5).long(),
            "probabilities": torch.stack([1 - positive, positive], -1),
        }


@TASKS.register("multilabel")
class MultilabelClassification(Task):
    """Any subset of C labels; the model outputs C independent logits."""

    target_kind = "multilabel"
    metric_kind = "multilabel"
    default_loss = "bce"
    default_metrics = ("accuracy", "f1", "auroc")
    higher_is_better = _HIGHER
    deployment = CLASSES
    report_metrics = ("confusion_matrix", "ece", "brier")

    def update_metrics(self, metrics, outputs, batch):  # type: ignore[no-untyped-def]
        metrics.update(self.scores(outputs), batch.target.long())

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.sigmoid()

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        probs = self.scores(outputs.float())
        return {"label": (probs > 0.5).long(), "probabilities": probs}
