"""Records that flow from data to the model and the task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

TargetKind = Literal["categorical", "continuous", "multilabel"]


@dataclass(slots=True)
class Batch:
    """One batch: model inputs and targets (tensors, or structures of tensors)."""

    inputs: Any
    target: Any

    def to(
        self,
        device: torch.device,
        non_blocking: bool = False,
        memory_format: torch.memory_format | None = None,
    ) -> Batch:
        inputs = _to(self.inputs, device, non_blocking)
        if memory_format is not None and isinstance(inputs, torch.Tensor) and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=memory_format)  # channels_last for CNNs
        return Batch(inputs, _to(self.target, device, non_blocking))

    def __len__(self) -> int:
        first = self.inputs if isinstance(self.inputs, torch.Tensor) else self.target
        return len(first)


def _to(value: Any, device: torch.device, non_blocking: bool) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, dict):
        return {k: _to(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device, non_blocking) for v in value)
    return value


@dataclass(frozen=True)
class TensorSplit:
    """A split that fits in memory: loaded in whole batches by index, never per sample."""

    inputs: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class DataSpec:
    """What the model and task need to know about the data.

    Attributes:
        input_shape: Shape of one sample's inputs, e.g. ``(64,)`` or ``(1, 8, 8)``.
        target_kind: ``categorical`` (class indices), ``continuous`` or ``multilabel``.
        class_names: Names of the classes in index order (categorical and multilabel).
        target_names: Names of the regression targets (continuous).
        target_mean, target_std: Training-split statistics of continuous targets, so a
            model head can predict in the targets' own units from a well-scaled start.
        vocab_size, pad_id: For token-id inputs (texts): the tokenizer's number of ids
            and its padding id; 0 for other inputs.
        horizon, future_width: For forecasting windows: the steps forecast and the width of
            the known-future inputs per step (``input_shape`` is then (lookback, past width));
            0 for other inputs.
        vocabulary: For token-id inputs from a tokenizer trained on the data: each id's
            token string (so a model can load pretrained word vectors); empty otherwise.
    """

    input_shape: tuple[int, ...]
    target_kind: TargetKind
    class_names: tuple[str, ...] = ()
    target_names: tuple[str, ...] = ()
    target_mean: tuple[float, ...] = ()
    target_std: tuple[float, ...] = ()
    vocab_size: int = 0
    pad_id: int = 0
    horizon: int = 0
    future_width: int = 0
    vocabulary: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """Width of the model's output layer."""
        if self.target_kind == "continuous":
            return max(1, len(self.target_names))
        if self.target_kind == "categorical" and self.num_classes == 2:
            return 2
        return self.num_classes


class RunArtifact(Protocol):
    """Something the data derives from the trained model once training has ended.

    It is called on the main process with the best weights loaded, may write files into
    the run folder, and returns the facts it adds to the run's ``summary.json``.
    """

    def write(self, model: nn.Module, run_dir: Path) -> dict[str, Any]: ...


@dataclass
class DataBundle:
    """The train/val/test splits of a source, ready for loaders.

    Attributes:
        train, val, test: In-memory :class:`TensorSplit` or any map-style ``Dataset``
            whose items are ``(inputs, target)``.
        spec: What the model and task need to know.
        featurizer: Turns a user's raw input (a CSV, image files) into model inputs at
            predict time; fitted on the training split only.
        summary: Facts for the run's report (sizes, class balance, imputed values).
        baseline_inputs: Per split, the features a classical baseline should see when
            they differ from the model inputs (e.g. raw digit pixels, the scale
            ``SVC(gamma=0.001)`` is tuned for, or raw texts); by default the flattened
            model inputs.
        baseline_targets: Per split, the baseline's targets when the splits are not
            in-memory tensors; by default each split's ``target``.
        collate: Turns a list of dataset items into a :class:`Batch` (padding texts,
            keeping detection targets as lists); by default tensors are stacked.
    """

    train: TensorSplit | Dataset
    val: TensorSplit | Dataset
    test: TensorSplit | Dataset
    spec: DataSpec
    featurizer: Any
    summary: dict[str, Any] = field(default_factory=dict)
    baseline_inputs: dict[str, Any] | None = None
    baseline_targets: dict[str, Any] | None = None
    collate: Callable[[list[Any]], Batch] | None = None
    # Training callbacks the data brings (e.g. listing skipped unreadable images each epoch);
    # one with a ``summary() -> dict`` method adds its entries to the run's summary.json.
    callbacks: list[Any] = field(default_factory=list)
    # What the data derives from the trained model when training ends (e.g. word vectors
    # written beside the weights, with the nearest neighbours of a few words).
    artifacts: list[RunArtifact] = field(default_factory=list)
    # Scores of the baseline's test predictions ``(y_true, y_pred) -> {name: value}`` named
    # like the task's metrics (e.g. per-pixel mean IoU), instead of accuracy and F1.
    baseline_metrics: Callable[[Any, Any], dict[str, float]] | None = None
    # The baseline ``{"name": ..., settings}`` a run of this data gets when its config names
    # none (e.g. logistic regression on images), and otherwise why this data has none.
    default_baseline: dict[str, Any] | None = None
    baseline_note: str | None = None

    def split(self, name: str) -> TensorSplit | Dataset:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)


@dataclass(frozen=True)
class PretrainedBackbone:
    """A torchvision backbone and the weights a model starts from.

    Attributes:
        name: The backbone's name, e.g. ``mobilenet_v2``.
        weights: ``imagenet`` or a weights file.
    """

    name: str
    weights: str


@dataclass(frozen=True)
class InputNeeds:
    """What a model needs of its inputs, as the model declares it.

    The counterpart of :class:`DataSpec`: a data source reads this instead of the config's
    ``model`` section, as torchvision's ``Weights`` carry their own ``transforms()``.
    ``torchlab.models.input_needs`` gives it for a config's model.

    Attributes:
        image_mean, image_std: Per-RGB-channel statistics the model's pretrained weights
            were trained with; sources with ``normalize: auto`` normalise with them. Empty
            when the model has no such weights (the data's own statistics are used).
        tokenizer: The pretrained tokenizer whose ids the model reads (``minilm`` or a
            local Hugging Face model directory); None when the source may train its own.
        backbone: The pretrained backbone the model starts from, so image data's default
            baseline probes the same features; None without pretrained weights.
    """

    image_mean: tuple[float, ...] = ()
    image_std: tuple[float, ...] = ()
    tokenizer: str | None = None
    backbone: PretrainedBackbone | None = None


@dataclass(frozen=True)
class Fold:
    """Fold ``index`` of ``folds`` in shuffle ``repeat``, as the test part of a run.

    ``group`` names the source column whose values keep to one fold; the source passes
    that column's values to ``split_indices`` as ``groups``.
    """

    folds: int
    index: int
    repeat: int = 0
    group: str | None = None


@dataclass(frozen=True)
class SourceContext:
    """What every data source builder receives besides its own settings."""

    val: float
    test: float
    stratify: bool
    seed: int
    target_kind: TargetKind
    # What the model needs of its inputs, e.g. the image statistics its pretrained weights
    # expect; never the model's own settings.
    needs: InputNeeds = InputNeeds()
    # The saved run being rebuilt (evaluate, resume, report), else None: a source reuses
    # what the run saved (e.g. its tokenizer.json) instead of fitting it again.
    run_dir: Any = None
    # A k-fold test part in place of the ``test`` fraction (``torchlab cv``); sources pass
    # it to ``split_indices``, and a source that cannot honour it says so.
    fold: Fold | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.needs, InputNeeds):  # e.g. the config's model section
            raise TypeError(
                "SourceContext.needs takes an InputNeeds, as torchlab.models.input_needs("
                f"config.model) gives it; received {type(self.needs).__name__}."
            )
