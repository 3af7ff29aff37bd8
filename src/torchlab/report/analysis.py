"""What a report shows about a model's test predictions, as numbers and PNG figures.

Each figure is returned as PNG bytes so the HTML report can embed it (no external files).
Classification gets a confusion matrix, per-class precision/recall/F1 and one-vs-rest ROC
curves; regression gets predicted-vs-true and residual plots; image data gets a sample grid,
text data a histogram of token lengths.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Predictions:
    """Scores (probabilities for classifiers, values for regression) and targets of a split."""

    scores: np.ndarray  # (N, C) probabilities, (N,) positive-class probability, or (N, K) values
    target: np.ndarray  # (N,) class indices, (N, C) multi-label indicators or (N, K) values


@dataclass
class Analysis:
    """Tables and figures of one run's test split."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)  # title -> PNG
    note: str = ""  # why an analysis is missing
    errors: Any = None  # an ErrorAnalysis (report.error_analysis) of classifiers and regressions
    explanations: Any = None  # Explanations (report.explanations) of a few test examples


@torch.inference_mode()
def predictions(model: Any, task: Any, loader: Any, device: torch.device) -> Predictions:
    """Run ``model`` over every batch of ``loader`` and collect the task's scores."""
    model.eval()
    scores, targets = [], []
    for batch in loader.epoch(0):
        batch = batch.to(device)
        outputs = task.evaluation_step(model, batch).outputs
        scores.append(task.scores(outputs.float()).cpu())
        targets.append(batch.target.cpu())
    return Predictions(torch.cat(scores).numpy(), torch.cat(targets).numpy())


def png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def analyse(pred: Predictions, spec: Any) -> Analysis:
    """The analysis that fits the target kind (unknown kinds get none)."""
    if spec.target_kind == "categorical":
        return classification(pred, list(spec.class_names))
    if spec.target_kind == "continuous":
        names = list(spec.target_names) or ["target"]
        return regression(pred, names)
    if spec.target_kind == "multilabel":
        return multilabel(pred, list(spec.class_names))
    return Analysis()


def classification(pred: Predictions, classes: list[str]) -> Analysis:
    from sklearn import metrics

    probs = pred.scores
    if probs.ndim == 1:  # binary task with one logit: P(class 1)
        probs = np.stack([1 - probs, probs], axis=1)
    labels = list(range(len(classes)))
    y, y_hat = pred.target.astype(int), probs.argmax(axis=1)
    out = Analysis()
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y, y_hat, labels=labels, zero_division=0
    )
    out.tables["per-class metrics"] = [
        {"class": c, "precision": p, "recall": r, "f1": f, "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    ]
    matrix = metrics.confusion_matrix(y, y_hat, labels=labels)
    out.figures["Confusion matrix (test)"] = _confusion(matrix, classes)
    out.figures["ROC curves (test, one vs rest)"] = _roc(y, probs, classes)
    return out


def _confusion(matrix: np.ndarray, classes: list[str]) -> bytes:
    plt = _plt()
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    high = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j, i, str(count), ha="center", va="center", color="white" if count > high else "black"
        )
    return png(fig)


def _roc(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> bytes:
    from sklearn import metrics

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    shown = range(1, 2) if len(classes) == 2 else range(len(classes))
    for k in shown:
        positives = y == k
        if positives.all() or not positives.any():
            continue  # ROC needs both classes present
        fpr, tpr, _ = metrics.roc_curve(positives, probs[:, k])
        ax.plot(fpr, tpr, label=f"{classes[k]} (AUC {metrics.auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(alpha=0.3)
    return png(fig)


def multilabel(pred: Predictions, classes: list[str]) -> Analysis:
    from sklearn import metrics

    y, y_hat = pred.target.astype(int), (pred.scores > 0.5).astype(int)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y, y_hat, zero_division=0
    )
    out = Analysis()
    out.tables["per-label metrics"] = [
        {"label": c, "precision": p, "recall": r, "f1": f, "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    ]
    return out


def regression(pred: Predictions, names: list[str]) -> Analysis:
    plt = _plt()
    values = pred.scores.reshape(len(pred.scores), -1)
    target = pred.target.reshape(len(pred.target), -1)
    out = Analysis()
    rows = []
    for k, name in enumerate(names):
        residual = target[:, k] - values[:, k]
        rows.append(
            {
                "target": name,
                "mae": float(np.abs(residual).mean()),
                "rmse": float(np.sqrt((residual**2).mean())),
                "bias": float(residual.mean()),
            }
        )
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.scatter(target[:, k], values[:, k], s=10, alpha=0.7)
        low, high = float(target[:, k].min()), float(target[:, k].max())
        left.plot([low, high], [low, high], linestyle="--", color="0.5")
        left.set_xlabel(f"true {name}")
        left.set_ylabel(f"predicted {name}")
        right.scatter(values[:, k], residual, s=10, alpha=0.7)
        right.axhline(0, linestyle="--", color="0.5")
        right.set_xlabel(f"predicted {name}")
        right.set_ylabel("residual (true - predicted)")
        for ax in (left, right):
            ax.grid(alpha=0.3)
        out.figures[f"Residuals of {name} (test)"] = png(fig)
    out.tables["per-target errors"] = rows
    return out


def class_balance(summary: dict[str, Any], classes: list[str]) -> bytes | None:
    """Bars of class counts per split, from the data summary."""
    counts = summary.get("class_counts")
    if not counts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(classes) + 2), 3.5))
    width = 0.8 / max(1, len(counts))
    for i, (split, values) in enumerate(counts.items()):
        values = list(values.values()) if isinstance(values, dict) else list(values)
        ax.bar(np.arange(len(values)) + i * width, values, width, label=split)
    names = classes or [str(i) for i in range(len(values))]
    ax.set_xticks(np.arange(len(names)) + width * (len(counts) - 1) / 2, names, rotation=45)
    ax.set_ylabel("samples")
    ax.legend()
    return png(fig)


def image_grid(inputs: torch.Tensor, target: torch.Tensor, classes: list[str]) -> bytes:
    """The first 24 training images, each min-max scaled, captioned with its class."""
    plt = _plt()
    count = min(24, len(inputs))
    cols = min(8, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(count):
        image = inputs[i].float()
        image = (image - image.min()) / (image.max() - image.min() + 1e-8)
        ax = axes.ravel()[i]
        if image.shape[0] in (3, 4):
            ax.imshow(image[:3].permute(1, 2, 0).numpy())
        else:
            ax.imshow(image[0].numpy(), cmap="gray")
        label = int(target[i]) if target.ndim == 1 else None
        if label is not None and label < len(classes):
            ax.set_title(classes[label], fontsize=8)
    return png(fig)


def token_lengths(bundle: Any) -> dict[str, list[int]] | None:
    """Tokens per text and split of a text-classification bundle, before truncation.

    The raw texts (``baseline_inputs``) are tokenized again without a length limit; when they
    are absent the truncated ids the model sees are counted instead. Other bundles: None.
    """
    tokenizer = getattr(bundle.featurizer, "tokenizer", None)
    splits = {n: getattr(bundle, n, None) for n in ("train", "val", "test")}
    if tokenizer is None or not isinstance(getattr(splits["train"], "ids", None), list):
        return None
    texts = bundle.baseline_inputs or {}
    out = {}
    for name, split in splits.items():
        if split is None or not len(split):
            continue
        if name in texts and len(texts[name]) == len(split):
            out[name] = [len(ids) for ids in tokenizer.encode([str(t) for t in texts[name]])]
        else:
            out[name] = [len(ids) for ids in split.ids]
    return out


def length_histogram(lengths: dict[str, list[int]], max_length: int | None) -> bytes:
    """Overlaid histograms of tokens per text, one per split, with the truncation length."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    longest = max(max(v) for v in lengths.values() if v)
    bins = np.linspace(0, longest + 1, min(60, longest + 2))
    for name, values in lengths.items():
        share = np.full(len(values), 1 / len(values))  # bar heights sum to 1 per split
        ax.hist(values, bins=bins, weights=share, histtype="step", lw=1.5,
                label=f"{name} (median {int(np.median(values))})")  # fmt: skip
    if max_length:
        cut = sum(v > max_length for values in lengths.values() for v in values)
        total = sum(len(v) for v in lengths.values())
        ax.axvline(max_length, color="0.3", ls="--",
                   label=f"max_length {max_length} ({cut} of {total} texts truncated)")  # fmt: skip
    ax.set_xlabel("tokens per text")
    ax.set_ylabel("share of texts")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig)
