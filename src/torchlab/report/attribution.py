"""Attributions of a trained model's outputs to its inputs, computed with Captum.

Integrated gradients (https://arxiv.org/abs/1703.01365) integrate the gradient along the
straight path from a baseline input to the real one, so a row's attributions sum to
``f(x) - f(baseline)`` (completeness). The baseline is zero in the model's input space:
for tables the training mean of each numeric column and no category of a categorical one,
for images the training mean image, for texts padding in every position (attributed at the
token embeddings). Occlusion replaces a patch of an image, or one table column, with that
baseline and records how the output changes.

The explained output is the model's raw output for the predicted class (a logit) of a
classifier, and the first target of a regression.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from torchlab.errors import ConfigError

METHODS = ("integrated-gradients", "occlusion")
STEPS = 32  # points on the integration path; enough for completeness within a few percent
# Inputs on the path per forward pass (examples x steps), so many rows or images fit in memory.
PATH_BATCH = {"tabular": 4096, "image": 64, "text": 64}


def captum_missing() -> str | None:
    """Why explanations cannot be computed here, or None when Captum is installed."""
    import importlib.util

    if importlib.util.find_spec("captum") is None:
        return "Explanations need Captum, which is not installed: pip install 'torchlab[explain]'."
    return None


def require_captum() -> None:
    if (why := captum_missing()) is not None:
        raise ConfigError(why)


def check_method(method: str, kind: str) -> None:
    """``method`` must be one of :data:`METHODS`, and occlusion needs tables or images."""
    if method not in METHODS:
        raise ConfigError(
            f"Unknown explanation method '{method}'; use one of {', '.join(METHODS)}."
        )
    if method == "occlusion" and kind == "text":
        raise ConfigError(
            "Method 'occlusion' explains table and image runs; explain a text run with "
            "--method integrated-gradients."
        )


def explained_targets(outputs: torch.Tensor, target_kind: str) -> torch.Tensor:
    """The output index explained per row: the predicted class of a multi-class classifier,
    else output 0 (the one logit of a binary classifier, the first regression target)."""
    if target_kind == "categorical" and outputs.shape[-1] > 1:
        return outputs.argmax(-1)
    return torch.zeros(len(outputs), dtype=torch.long, device=outputs.device)


@contextmanager
def differentiable(model: nn.Module) -> Iterator[None]:
    """Gradients on, model in eval mode; cuDNN off, since its RNNs differentiate only in
    training mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        model.train(was_training)


def column_groups(featurizer: Any) -> list[int]:
    """The user column of each model feature (one-hot features of a column share it)."""
    return [i for i, column in enumerate(featurizer.columns) for _ in column.features]


def table_attributions(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    featurizer: Any,
    method: str = "integrated-gradients",
    steps: int = STEPS,
) -> torch.Tensor:
    """``(N, columns)`` attributions of table rows ``(N, F)`` to the user's columns.

    Integrated gradients of a categorical column's one-hot features are summed; occlusion
    sets each column's features to the baseline together.
    """
    from captum.attr import FeatureAblation, IntegratedGradients

    groups = torch.tensor(column_groups(featurizer), device=inputs.device)
    with differentiable(model):
        if method == "occlusion":
            attr = FeatureAblation(model).attribute(
                inputs, baselines=0.0, target=targets, feature_mask=groups[None]
            )
            first = [groups.tolist().index(g) for g in range(len(featurizer.columns))]
            return attr[:, first].detach()  # every feature of a group holds the group's effect
        attr = IntegratedGradients(model).attribute(
            inputs,
            baselines=torch.zeros_like(inputs),
            target=targets,
            n_steps=steps,
            internal_batch_size=PATH_BATCH["tabular"],
        )
    grouped = torch.zeros(len(inputs), len(featurizer.columns), device=inputs.device)
    return grouped.index_add_(1, groups, attr.detach().float())


def image_attributions(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    method: str = "integrated-gradients",
    steps: int = STEPS,
) -> torch.Tensor:
    """``(N, H, W)`` attributions of images ``(N, C, H, W)``, summed over channels."""
    from captum.attr import IntegratedGradients, Occlusion

    with differentiable(model):
        if method == "occlusion":
            channels, height, width = inputs.shape[1:]
            side = max(2, min(height, width) // 8)
            attr = Occlusion(model).attribute(
                inputs,
                sliding_window_shapes=(channels, side, side),
                strides=(channels, max(1, side // 2), max(1, side // 2)),
                baselines=0.0,
                target=targets,
            )
        else:
            attr = IntegratedGradients(model).attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                target=targets,
                n_steps=steps,
                internal_batch_size=PATH_BATCH["image"],
            )
    return attr.detach().float().sum(1)


def token_attributions(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    targets: torch.Tensor,
    pad_id: int,
    steps: int = STEPS,
) -> torch.Tensor:
    """``(N, T)`` attributions of each token of texts ``{"ids": (N, T), ...}``: integrated
    gradients at the model's first embedding layer, summed over the embedding."""
    from captum.attr import LayerIntegratedGradients

    embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if embedding is None:
        raise ConfigError(
            f"The {type(model).__name__} model has no token embedding (nn.Embedding) to "
            "attribute to, so its texts cannot be explained."
        )
    names = [name for name in inputs if name != "ids"]

    def forward(ids: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return model({"ids": ids, **dict(zip(names, rest, strict=True))})

    ids = inputs["ids"]
    with differentiable(model):
        attr = LayerIntegratedGradients(forward, embedding).attribute(
            ids,
            baselines=torch.full_like(ids, pad_id),
            additional_forward_args=tuple(inputs[name] for name in names),
            target=targets,
            n_steps=steps,
            internal_batch_size=PATH_BATCH["text"],
        )
    return attr.detach().float().sum(-1)
