"""Regression of one or more continuous targets."""

from __future__ import annotations

import torch

from torchlab.registry import TASKS
from torchlab.tasks.base import Deployment, Task


@TASKS.register("regression")
class Regression(Task):
    """Continuous targets shaped (B, T); the model outputs T values in the target's units."""

    target_kind = "continuous"
    metric_kind = "regression"
    default_loss = "mse"
    default_metrics = ("mae", "rmse", "r2")
    higher_is_better = frozenset({"r2", "explained_variance"})
    deployment = Deployment(answer="torchlab.serve.answers:Values")

    def update_metrics(self, metrics, outputs, batch):  # type: ignore[no-untyped-def]
        # torchmetrics treats (B, 1) as one output only when squeezed to (B,)
        if outputs.shape[-1] == 1:
            metrics.update(outputs.squeeze(-1).float(), batch.target.squeeze(-1))
        else:
            metrics.update(outputs.float(), batch.target)

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"prediction": outputs.float()}
