"""What a run exports: its model with the run's preprocessing, or an RL run's policy.

Exporters and verification see only an :class:`Exportable` (a module, an input kind and
shape); what the sidecar says about inputs, outputs and preprocessing comes from here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.inputs import InputKind, TextKind, input_kind
from torchlab.run import Run


@dataclass(frozen=True)
class Exportable:
    """A module to export, what its input looks like, and what the sidecar says about it.

    Attributes:
        model: The module to export (eval mode, CPU).
        kind: The input kind (dynamic axes, dtype, example inputs).
        input_shape: One sample's input shape.
        description: Sidecar fields describing inputs, outputs and preprocessing.
        reference: The eager model the artefact must match, when ``model`` is an
            export-friendly adapter of it (see :mod:`torchlab.exporters.adapters`).
        compare: Compares outputs that are not one tensor (a detector's boxes per image):
            ``(expected, got, inputs, tolerance) -> verification case``; None compares tensors.
        check: ``(format, quantize)`` -> None, raising ExportError for a format or
            quantisation that cannot hold the model faithfully; None accepts every one.
    """

    model: nn.Module
    kind: InputKind
    input_shape: tuple[int, ...]
    description: dict[str, Any]
    reference: nn.Module | None = None
    compare: Callable[..., dict[str, Any]] | None = None
    check: Callable[[str, str | None], None] | None = None
    featurizer: Any = None  # the run's preprocessing, whose side files go beside the artefact


def refusing(exportable: Exportable, format_name: str, reason: str) -> Exportable:
    """``exportable`` whose check also refuses ``format_name``, saying ``reason``."""
    earlier = exportable.check

    def check(format: str, quantize: str | None) -> None:
        if earlier is not None:
            earlier(format, quantize)
        if format == format_name:
            raise ExportError(reason)

    return replace(exportable, check=check)


def refuse_decoding(task: str, decodes: str | None) -> None:
    """Seq2seq and language models (``Task.decodes``): one clear sentence on why and what
    serves them."""
    if decodes is not None:
        raise ExportError(
            f"The '{task}' run cannot be exported: {decodes} token by token in a "
            "loop whose length depends on the tokens it produces, which a fixed graph cannot "
            "reproduce faithfully; serve the run itself with 'torchlab serve RUN_DIR' or "
            "predict with 'torchlab predict RUN_DIR FILES'."
        )


def graph_exportable(run: Run, model: nn.Module) -> Exportable:
    """A run's trained ``model`` exported as it is (an RNN text classifier as its masked
    equivalent), with the sidecar's description of inputs, outputs and preprocessing."""
    from torchlab.exporters.sidecar import STEPS
    from torchlab.tasks import build_task

    spec, kind = run.spec, input_kind(run.featurizer.kind)
    if isinstance(kind, TextKind) and spec.vocab_size:
        kind = replace(kind, vocab_size=min(kind.vocab_size, spec.vocab_size))
    num_outputs = build_task(run.config.task, spec).num_outputs
    description: dict[str, Any] = {
        "model": run.config.model.model_dump(mode="json"),
        "task": run.config.task.model_dump(mode="json"),
        "spec": asdict(spec),
        "output": {
            # Segmentation models return per-pixel logits at the input size.
            "shape": ["batch", num_outputs, *(["height", "width"] * (kind.name == "pixels"))],
            "meaning": output_meaning(run.config.task.name, spec),
        },
        "class_names": list(spec.class_names),
        "target_names": list(spec.target_names),
        "preprocessing": run.featurizer.to_dict(),
        "preprocessing_steps": STEPS.get(kind.name, "see the featurizer named in preprocessing"),
    }
    adapted = text_adapter(model, spec)
    return Exportable(adapted or model, kind, tuple(spec.input_shape), description, model)


def output_meaning(task: str, spec: Any) -> str:
    """What the artefact's outputs are, so nobody scales or activates them twice."""
    if spec.target_kind == "continuous":
        return (
            "predictions already in the targets' own units, one per target_names entry: "
            "spec.target_mean and target_std are applied inside the model, do not apply them again"
        )
    activation = "sigmoid" if spec.target_kind == "multilabel" else "softmax"
    return f"raw scores (logits) per class; task '{task}' applies {activation} for probabilities"


def text_adapter(model: nn.Module, spec: Any) -> nn.Module | None:
    """The masked equivalent of a packed-sequence RNN text classifier, else None."""
    from torchlab.models.text.rnn import RNNClassifier

    if not isinstance(model, RNNClassifier):
        return None
    from torchlab.exporters.adapters import MaskedRNNText

    return MaskedRNNText(model, spec.input_shape[0]).eval()
