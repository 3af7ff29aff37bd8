"""A new task and a new export format each take one module: defined here alone, they train,
evaluate, export, predict and report through every verb (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlab
from torchlab.data.base import Batch
from torchlab.exporters.base import EXPORTERS
from torchlab.registry import TASKS
from torchlab.tasks.base import StepOutput, Task


@TASKS.register("ordinal")
class Ordinal(Task):
    """Ordered classes as K - 1 cumulative logits, logit k scoring P(y > k) (CORAL)."""

    target_kind = "categorical"
    metric_kind = "multiclass"
    default_loss = "cross_entropy"  # unused: the cumulative loss below is the objective
    default_metrics = ("accuracy",)
    higher_is_better = frozenset({"accuracy"})

    @property
    def num_outputs(self) -> int:
        return self.spec.num_classes - 1

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch.inputs)  # (B, K - 1)
        thresholds = torch.arange(logits.shape[1], device=logits.device)
        above = (batch.target[:, None] > thresholds).float()  # (B, K - 1)
        return StepOutput(F.binary_cross_entropy_with_logits(logits, above), logits)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities: P(y = k) = P(y > k - 1) - P(y > k)."""
        above = torch.sigmoid(outputs.float())
        edges = torch.cat([torch.ones_like(above[:, :1]), above, torch.zeros_like(above[:, :1])], 1)
        return (edges[:, :-1] - edges[:, 1:]).clamp_min(0)

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        probabilities = self.scores(outputs)
        return {"label": probabilities.argmax(1), "probabilities": probabilities}


@EXPORTERS.register("traced")
class TracedExporter:
    """``torch.jit.trace`` alone: the graph the example input takes."""

    name: ClassVar[str] = "traced"
    filename: ClassVar[str] = "model.traced.pt"
    quantizable: ClassVar[bool] = False

    def save(self, model: nn.Module, example: Any, kind: Any, path: Path, quantize: bool) -> dict:
        torch.jit.trace(model, example).save(str(path))
        return {"method": "trace"}

    def load(self, path: Path) -> Any:
        module = torch.jit.load(str(path)).eval()
        return lambda inputs: module(inputs)


@pytest.fixture(scope="module")
def ordinal_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    overrides = {"task": "ordinal", "trainer.max_epochs": 30, "trainer.progress": "none"}
    return torchlab.train("iris", overrides, output_dir=tmp_path_factory.mktemp("runs"))


def test_a_task_in_one_module_trains_evaluates_and_reports(ordinal_run: Any) -> None:
    assert ordinal_run.config.task.name == "ordinal"
    assert ordinal_run.metrics["test/accuracy"] > 0.8  # iris's species are nearly ordered
    assert torchlab.evaluate(ordinal_run, "test") == pytest.approx(ordinal_run.metrics)
    assert "ordinal" in (ordinal_run.dir / "report.html").read_text()


def test_a_format_in_one_module_exports_and_predicts(ordinal_run: Any, tmp_path: Path) -> None:
    path = torchlab.export(ordinal_run, "traced", output=tmp_path / "traced")
    assert (path / "model.traced.pt").is_file()
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    frame = iris.frame.drop(columns="target").head(20)
    exported = torchlab.predict(path, frame)
    eager = torchlab.predict(ordinal_run, frame)
    assert exported["label"].tolist() == eager["label"].tolist()
    assert set(eager["label"]) <= set(iris.target_names)
