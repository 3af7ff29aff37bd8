"""What attributions look like: importance bars for tables, overlays for images and
highlighted tokens for texts; and the few explained test examples a run's report shows.

The computing is :mod:`torchlab.report.attribution`'s; ``torchlab explain`` writes the same
pictures for a user's own inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from torchlab.report.analysis import _plt, png

REPORT_ROWS = 256  # table rows whose attributions make the report's global importance
REPORT_EXAMPLES = 4  # images or texts explained in a report


@dataclass
class Token:
    """One token of an explained text, with its attribution and highlight colour."""

    text: str
    score: float
    colour: str


@dataclass
class Explanations:
    """A report's explanations: figures (tables, images) and highlighted texts."""

    figures: dict[str, bytes] = field(default_factory=dict)  # title -> PNG
    texts: list[dict[str, Any]] = field(default_factory=list)  # {"title", "tokens"}
    note: str = ""  # why there are none

    def __bool__(self) -> bool:
        return bool(self.figures or self.texts or self.note)


def importance_figure(names: list[str], values: np.ndarray, xlabel: str) -> bytes:
    """Horizontal bars of one importance per column, the largest on top."""
    plt = _plt()
    order = np.argsort(values)[-30:]  # the 30 largest, ascending so the largest is on top
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(order) + 1.2))
    ax.barh([names[i] for i in order], values[order], color="#3b6ea8")
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def overlay_figure(images: torch.Tensor, attributions: torch.Tensor, titles: list[str]) -> bytes:
    """Each image (min-max scaled, gray) beside its attributions: red raises the explained
    output, blue lowers it; colours are scaled per image."""
    plt = _plt()
    count = len(images)
    fig, axes = plt.subplots(count, 2, figsize=(4.4, 2.3 * count), squeeze=False)
    for (left, right), image, attr, title in zip(axes, images, attributions, titles, strict=True):
        gray = image.float().mean(0).numpy()
        gray = (gray - gray.min()) / (np.ptp(gray) + 1e-8)
        bound = float(attr.abs().max()) or 1.0
        left.imshow(gray, cmap="gray")
        right.imshow(gray, cmap="gray")
        right.imshow(attr.numpy(), cmap="bwr", vmin=-bound, vmax=bound, alpha=0.6)
        left.set_title(title, fontsize=8)
        right.set_title("attributions", fontsize=8)
        for ax in (left, right):
            ax.axis("off")
    return png(fig)


def highlighted(tokens: list[str], scores: list[float]) -> list[Token]:
    """Tokens with a background colour: red for positive attributions, blue for negative,
    as strong as the score relative to the text's largest."""
    bound = max((abs(s) for s in scores), default=0.0) or 1.0
    out = []
    for text, score in zip(tokens, scores, strict=True):
        alpha = min(1.0, abs(score) / bound) * 0.8
        rgb = "220, 50, 47" if score > 0 else "38, 139, 210"
        out.append(Token(text, score, f"rgba({rgb}, {alpha:.2f})"))
    return out


def text_tokens(featurizer: Any, ids: torch.Tensor, length: int) -> list[str]:
    """The readable tokens of the first ``length`` ids of one text."""
    tokenizer = featurizer.tokenizer
    return [tokenizer.id_to_token(int(i)) or "?" for i in ids[:length]]


def report_explanations(experiment: Any, class_names: list[str]) -> Explanations:
    """Attributions of a few test examples for the report: the global importance of each
    column (tables), or the first test images or texts explained. Without Captum, a note."""
    from torchlab.report.attribution import captum_missing

    if (why := captum_missing()) is not None:
        return Explanations(note=why)
    bundle = experiment.bundle
    kind = getattr(bundle.featurizer, "kind", None)
    if bundle.spec.target_kind not in ("categorical", "continuous") or not len(bundle.test):
        return Explanations()
    if kind == "tabular":
        return table_importance(experiment)
    if kind == "image":
        return explained_images(experiment, class_names)
    if kind == "text" and hasattr(bundle.featurizer, "tokenizer"):
        return explained_texts(experiment, class_names)
    return Explanations()


def test_batch(bundle: Any, count: int, device: torch.device) -> Any:
    """The first ``count`` test inputs as the model takes them."""
    from torchlab.data.base import Batch
    from torchlab.data.loaders import collate_pairs

    split, count = bundle.test, min(count, len(bundle.test))
    if hasattr(split, "inputs"):  # a TensorSplit
        batch = Batch(split.inputs[:count], split.target[:count])
    elif hasattr(split, "head"):  # a streamed split: its first rows
        batch = split.head(count)
    else:
        items = [split[i] for i in range(count)]
        batch = (bundle.collate or collate_pairs)(items)
    return batch.to(device)


def table_importance(experiment: Any) -> Explanations:
    from torchlab.report.attribution import explained_targets, table_attributions

    model, bundle = experiment.model, experiment.bundle
    inputs = test_batch(bundle, REPORT_ROWS, experiment.device).inputs
    with torch.no_grad():
        targets = explained_targets(model(inputs), bundle.spec.target_kind)
    attr = table_attributions(model, inputs, targets, bundle.featurizer)
    names = [c.name for c in bundle.featurizer.columns]
    figure = importance_figure(names, attr.abs().mean(0).cpu().numpy(), "mean |attribution|")
    title = (
        f"Global importance: mean |integrated gradients| per column over {len(inputs)} test rows"
    )
    return Explanations(figures={title: figure})


def prediction_titles(outputs: torch.Tensor, target_kind: str, class_names: list[str]) -> list[str]:
    if target_kind == "categorical" and outputs.shape[-1] > 1:
        probs = outputs.softmax(-1)
        return [f"pred {class_names[int(p.argmax())]} ({float(p.max()):.2f})" for p in probs]
    return [f"output {float(o[0]):.3g}" for o in outputs]


def explained_images(experiment: Any, class_names: list[str]) -> Explanations:
    from torchlab.report.attribution import explained_targets, image_attributions

    model, bundle = experiment.model, experiment.bundle
    batch = test_batch(bundle, REPORT_EXAMPLES, experiment.device)
    with torch.no_grad():
        outputs = model(batch.inputs)
    attr = image_attributions(
        model, batch.inputs, explained_targets(outputs, bundle.spec.target_kind)
    )
    titles = prediction_titles(outputs.float().cpu(), bundle.spec.target_kind, class_names)
    figure = overlay_figure(batch.inputs.cpu(), attr.cpu(), titles)
    return Explanations(figures={"Integrated gradients of the first test images": figure})


def explained_texts(experiment: Any, class_names: list[str]) -> Explanations:
    from torchlab.report.attribution import explained_targets, token_attributions

    model, bundle = experiment.model, experiment.bundle
    batch = test_batch(bundle, REPORT_EXAMPLES, experiment.device)
    with torch.no_grad():
        outputs = model(batch.inputs)
    targets = explained_targets(outputs, bundle.spec.target_kind)
    attr = token_attributions(model, batch.inputs, targets, bundle.spec.pad_id).cpu()
    titles = prediction_titles(outputs.float().cpu(), bundle.spec.target_kind, class_names)
    texts = []
    for row, title in enumerate(titles):
        length = int(batch.inputs["lengths"][row])
        tokens = text_tokens(bundle.featurizer, batch.inputs["ids"][row].cpu(), length)
        texts.append({"title": title, "tokens": highlighted(tokens, attr[row, :length].tolist())})
    return Explanations(texts=texts)
