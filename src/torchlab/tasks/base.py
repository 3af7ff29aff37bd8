"""The task contract shared by every problem type."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from torchlab.data.base import Batch, DataSpec, TargetKind
from torchlab.registry import LOSSES, METRICS, TASKS


@dataclass(frozen=True)
class StepOutput:
    """What a training or evaluation step returns."""

    loss: torch.Tensor
    outputs: Any


@dataclass(frozen=True)
class MetricContext:
    """What a metric builder needs to know about the problem."""

    kind: str  # "multiclass", "binary", "multilabel" or "regression"
    num_classes: int
    num_outputs: int


@dataclass(frozen=True)
class Deployment:
    """How a task's trained models leave their runs: exported, served and reported.

    Exporting, serving and reporting sit above tasks, so a record names their functions as
    ``module:function`` strings, resolved on use (:meth:`resolve`). Each layer looks the
    record up instead of naming tasks; a task without special needs keeps the defaults.

    Attributes:
        exportable: ``(run, model) -> Exportable``: what an export holds when it is not the
            model as it is (a detector on batch tensors, a forecaster on windows).
        refuses: Export formats that cannot hold the task's predictions, with the reason.
        decodes: How predictions come out of a decoding loop that stops on generated tokens,
            which a fixed export graph cannot reproduce; None: one forward pass predicts.
        answers: ``(predictor) -> records(outputs, inputs, sizes)``: the served answer of a
            pixel request (boxes, masks); None: the task takes no pixel requests.
        answer: The pydantic model of one served answer (``torchlab.serve.answers``), the
            schema ``POST /predict`` documents and holds answers to; None: every field the
            task's predictions have.
        analysis: ``(experiment, test_loader) -> Analysis``: the report's figures beyond the
            generic ones by target kind.

    The prediction files of ``torchlab predict`` come from :meth:`Task.predict`, or
    :meth:`Task.write_predictions` for predictions that are not columns.
    """

    exportable: str | None = None
    refuses: dict[str, str] = field(default_factory=dict)
    decodes: str | None = None
    answers: str | None = None
    answer: str | None = None
    analysis: str | None = None

    def resolve(self, name: str) -> Callable[..., Any] | None:
        """The function the field ``name`` names, imported now; None when it names none."""
        reference = getattr(self, name)
        if reference is None:
            return None
        module, _, function = reference.partition(":")
        return getattr(importlib.import_module(module), function)


class Task:
    """How a batch becomes loss, predictions and metric updates.

    Subclasses set the class attributes and, where the problem needs it, override
    :meth:`training_step` / :meth:`evaluation_step` (seq2seq decodes in evaluation,
    detectors compute their own losses) without any special case in the loop.
    """

    target_kind: ClassVar[TargetKind]
    metric_kind: ClassVar[str]
    default_loss: ClassVar[str]
    default_metrics: ClassVar[tuple[str, ...]]
    #: Metrics computed only for the final report (e.g. a confusion matrix), not per epoch.
    report_metrics: ClassVar[tuple[str, ...]] = ()
    #: Metrics where a higher value is better, so ``monitor_mode: auto`` picks "max".
    higher_is_better: ClassVar[frozenset[str]] = frozenset()
    deployment: ClassVar[Deployment] = Deployment()

    def __init__(self, spec: DataSpec, loss: nn.Module, metrics: list[str]) -> None:
        self.spec = spec
        self.loss_fn = loss
        self.metric_names = metrics

    @property
    def num_outputs(self) -> int:
        """Width of the model's output layer."""
        return self.spec.num_outputs

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        outputs = model(batch.inputs)
        return StepOutput(self.loss_fn(outputs, batch.target), outputs)

    def evaluation_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        return self.training_step(model, batch)

    def metrics(self, extra: tuple[str, ...] = ()) -> MetricCollection:
        """A fresh collection of this task's metrics plus ``extra`` (moved to the device by the caller)."""
        context = MetricContext(self.metric_kind, self.spec.num_classes, self.num_outputs)
        built: dict[str, Metric] = {
            name: METRICS.get(name, "task.metrics").build({}, "task.metrics", context)
            for name in (*self.metric_names, *extra)
        }
        return MetricCollection(built)

    def update_metrics(self, metrics: MetricCollection, outputs: Any, batch: Batch) -> None:
        metrics.update(self.scores(outputs), batch.target)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """What metrics are computed on: probabilities for classifiers, values for regression."""
        return outputs

    def predict(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named prediction columns for ``torchlab predict`` (e.g. label and probabilities)."""
        raise NotImplementedError

    def write_predictions(
        self, inputs: Any, outputs: Any, ids: list[str], folder: Path | None, featurizer: Any
    ) -> Any:
        """The prediction table of ``torchlab predict`` for tasks whose predictions are not
        columns (masks, boxes), writing files such as overlay PNGs into ``folder`` when one is
        given; None (the default) builds the table from :meth:`predict`."""
        return None

    def mode_for(self, metric: str) -> str:
        """ "max" when a higher value of ``metric`` (e.g. ``val/accuracy``) is better."""
        return "max" if metric.rpartition("/")[2] in self.higher_is_better else "min"


def generated_text_table(
    ids: list[str], inputs_name: str, inputs: Any, outputs: Any, featurizer: Any, path: Path | None
) -> Any:
    """The ``torchlab predict`` table of a text generator: id, input text and generated text,
    written as CSV to ``path`` when given."""
    import pandas as pd

    frame = pd.DataFrame(
        {"id": ids, inputs_name: featurizer.decode(inputs), "output": featurizer.decode(outputs)}
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    return frame


def build_task(config: Any, spec: DataSpec) -> Task:
    """Build the task named by a config's ``task`` section, with its loss and metrics."""
    entry = TASKS.get(config.name, "task.name")
    cls = entry.builder
    loss_component = config.loss or _named(cls.default_loss)
    loss = LOSSES.build(loss_component, "task.loss")
    metrics = list(config.metrics) if config.metrics is not None else list(cls.default_metrics)
    return entry.build(config.params, "task", spec, loss, metrics)


def _named(name: str) -> Any:
    from torchlab.config import Component

    return Component(name=name)


def higher_is_better() -> frozenset[str]:
    """The metrics for which any registered task scores a higher value better (accuracy,
    mean IoU, mAP, R², ...)."""
    names = (TASKS.get(name).builder.higher_is_better for name in TASKS.names())
    return frozenset().union(*names)
