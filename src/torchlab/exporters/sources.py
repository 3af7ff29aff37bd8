"""What a run exports: its model with the run's preprocessing, or an RL run's policy.

Exporters and verification see only an :class:`Exportable` (a module, an input kind and
shape); what the sidecar says about inputs, outputs and preprocessing comes from here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.inputs import InputKind, input_kind


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


@dataclass(frozen=True)
class ObservationKind(InputKind):
    """Observations of an RL environment: examples are drawn from its observation space, so
    verification runs on states the policy can meet (in range for discrete spaces)."""

    space: Any = None

    def example(self, input_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
        self.space.seed(seed)
        samples = np.stack([np.asarray(self.space.sample()) for _ in range(batch)])
        return torch.as_tensor(samples).to(self.dtype).reshape(batch, *input_shape)


def exportable(run: Any) -> Exportable:
    """The run's exportable module: an RL run's policy, else the trained model."""
    if getattr(run.config, "agent", None) is not None:
        return policy_exportable(run)
    return model_exportable(run)


# Tasks whose predictions come from a decoding loop that stops on generated tokens.
DECODING_TASKS = {
    "seq2seq": "a sequence-to-sequence model decodes (greedy or beam search)",
    "language-model": "a language model generates",
}


def refuse_decoding(task: str) -> None:
    """Seq2seq and language models: one clear sentence on why and what serves them."""
    if task in DECODING_TASKS:
        raise ExportError(
            f"The '{task}' run cannot be exported: {DECODING_TASKS[task]} token by token in a "
            "loop whose length depends on the tokens it produces, which a fixed graph cannot "
            "reproduce faithfully; serve the run itself with 'torchlab serve RUN_DIR' or "
            "predict with 'torchlab predict RUN_DIR FILES'."
        )


def model_exportable(run: Any) -> Exportable:
    from torchlab.exporters.sidecar import STEPS
    from torchlab.tasks import build_task

    refuse_decoding(run.config.task.name)
    if run.featurizer.kind == "series":
        from torchlab.exporters.forecasting import forecast_exportable

        return forecast_exportable(run)
    spec, kind = run.spec, input_kind(run.featurizer.kind)
    num_outputs = build_task(run.config.task, spec).num_outputs
    description = {
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
    model = run.load_model()
    if run.config.task.name == "detection":  # lists of boxes per image, TorchScript only
        from torchlab.exporters.detection import detection_exportable

        shape = tuple(spec.input_shape)
        return detection_exportable(model, Exportable(model, kind, shape, description))
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


def policy_exportable(run: Any) -> Exportable:
    import gymnasium as gym

    from torchlab.rl.api import load_policy

    policy = load_policy(run)
    obs_shape = tuple(policy.example.shape[1:])
    kind = ObservationKind(
        "observation", {0: "batch"}, dtype=policy.example.dtype, space=policy.observation_space
    )
    discrete = isinstance(policy.action_space, gym.spaces.Discrete)
    steps = (
        "observations as the environment returns them, batched (B, *shape)"
        if policy.normalization is None
        else "standardise each observation with 'normalization': (x - mean) / sqrt(var + 1e-8), "
        "clipped to [-10, 10], float32, batched (B, *shape)"
    )
    description = {
        "agent": run.config.agent.model_dump(mode="json"),
        "env": run.config.env.model_dump(mode="json"),
        "output": {
            "shape": ["batch"] if discrete else ["batch", *policy.action_space.shape],
            "meaning": "the deterministic action: the index of a Discrete action"
            if discrete
            else "the action, within the environment's bounds",
        },
        "preprocessing": {"kind": "observation", "normalization": policy.normalization},
        "preprocessing_steps": steps,
    }
    return Exportable(policy.module, kind, obs_shape, description)


def require_supervised(sidecar: dict[str, Any], directory: Any) -> None:
    """Predict and serve run supervised exports only; say so for a policy or forecaster."""
    if "forecasting" in sidecar:
        raise ExportError(
            f"'{directory}' holds a forecaster, which forecasts from the end of its run's data: "
            "run 'torchlab predict RUN_DIR --horizon N' on the run directory, or feed the "
            "artefact scaled windows as its export.json describes."
        )
    if "spec" not in sidecar:
        raise ExportError(
            f"'{directory}' holds an RL policy (observations -> actions), which predict and "
            "serve do not run; load its artefact directly (torch.jit.load or onnxruntime)."
        )
