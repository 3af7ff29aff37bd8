"""Where a model goes wrong on its test split: the worst predictions, the classes it mixes
up most, and its metrics on slices of the columns a user names (``report.slices``).

The worst predictions of a classifier are those with the lowest probability of the true
class; of a regression, those with the largest absolute error (summed over targets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from torchlab.report.analysis import Predictions, png

UNSEEN = "(not seen in training)"  # a category the featurizer encoded as all zeros
GALLERY = 8  # worst predictions shown
CONFUSED = 5  # class pairs shown
NUMERIC_BINS = 4  # quantile bins of a numeric slice column with many values


@dataclass
class ErrorAnalysis:
    """Tables and a figure of a run's mistakes on the test split."""

    worst: list[dict[str, Any]] = field(default_factory=list)  # one row per prediction
    gallery: bytes | None = None  # PNG of the worst images
    confused: list[dict[str, Any]] = field(default_factory=list)
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # column -> rows
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.worst or self.confused or self.slices or self.notes)


def class_probabilities(pred: Predictions) -> np.ndarray:
    """``(N, C)`` class probabilities (a binary classifier's one score becomes two)."""
    probs = pred.scores
    return np.stack([1 - probs, probs], axis=1) if probs.ndim == 1 else probs


def worst_predictions(pred: Predictions, spec: Any, count: int = GALLERY) -> list[dict[str, Any]]:
    """The ``count`` worst test predictions as rows: test position, true, predicted and the
    true class's probability (classifiers) or the absolute error (regression)."""
    if spec.target_kind == "categorical":
        probs = class_probabilities(pred)
        y = pred.target.astype(int)
        p_true = probs[np.arange(len(y)), y]
        order = np.argsort(p_true, kind="stable")[:count]
        names = list(spec.class_names)
        return [
            {"test row": int(i), "true": names[y[i]], "predicted": names[int(probs[i].argmax())],
             "p(true)": float(p_true[i]), "p(predicted)": float(probs[i].max())}
            for i in order
        ]  # fmt: skip
    if spec.target_kind == "continuous":
        values = pred.scores.reshape(len(pred.scores), -1)
        target = pred.target.reshape(len(pred.target), -1)
        error = np.abs(target - values).sum(1)
        order = np.argsort(-error, kind="stable")[:count]
        names = list(spec.target_names) or ["target"]
        rows = []
        for i in order:
            row: dict[str, Any] = {"test row": int(i)}
            for k, name in enumerate(names):
                row[f"true {name}"], row[f"predicted {name}"] = (
                    float(target[i, k]),
                    float(values[i, k]),
                )
            rows.append(row | {"absolute error": float(error[i])})
        return rows
    return []


def confused_pairs(
    pred: Predictions, classes: list[str], top: int = CONFUSED
) -> list[dict[str, Any]]:
    """The ``top`` most frequent (true, predicted) pairs of different classes."""
    from sklearn.metrics import confusion_matrix

    y, y_hat = pred.target.astype(int), class_probabilities(pred).argmax(1)
    matrix = confusion_matrix(y, y_hat, labels=list(range(len(classes))))
    support = matrix.sum(1)
    np.fill_diagonal(matrix, 0)
    pairs = [(int(matrix[i, j]), i, j) for i, j in zip(*np.nonzero(matrix), strict=True)]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [
        {"true": classes[i], "predicted as": classes[j], "count": n,
         "share of true class": n / support[i]}
        for n, i, j in pairs[:top]
    ]  # fmt: skip


def table_rows(featurizer: Any, inputs: Any) -> pd.DataFrame:
    """The user's columns of table rows, recovered from their model inputs ``(N, F)``:
    numbers unscaled, one-hot features back to their category (blanks show their fill)."""
    x = np.asarray(inputs, dtype=np.float64)
    columns, start = {}, 0
    for column in featurizer.columns:
        block = x[:, start : start + column.width]
        start += block.shape[1]
        if column.kind == "numeric":
            columns[column.name] = block[:, 0] * column.std + column.mean
        else:
            names = np.array(column.categories, dtype=object)[block.argmax(1)]
            columns[column.name] = np.where(block.max(1) > 0.5, names, UNSEEN)
    return pd.DataFrame(columns)


def slice_metrics(
    pred: Predictions, spec: Any, values: pd.Series, numeric: bool
) -> list[dict[str, Any]]:
    """Count and metrics of the test rows per value of one column (a numeric column with
    many values: per quantile bin)."""
    if numeric and values.nunique() > 2 * NUMERIC_BINS:
        values = pd.qcut(values, NUMERIC_BINS, precision=3, duplicates="drop")
    rows = []
    for value in sorted(values.unique()):
        mask = (values == value).to_numpy()
        part = Predictions(pred.scores[mask], pred.target[mask])
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        rows.append({"value": shown, "count": int(mask.sum()), **metrics_of(part, spec)})
    return rows


def metrics_of(pred: Predictions, spec: Any) -> dict[str, float]:
    from sklearn import metrics

    if spec.target_kind == "categorical":
        y, y_hat = pred.target.astype(int), class_probabilities(pred).argmax(1)
        return {
            "accuracy": float(metrics.accuracy_score(y, y_hat)),
            "f1": float(metrics.f1_score(y, y_hat, average="macro", zero_division=0)),
        }
    values = pred.scores.reshape(len(pred.scores), -1)
    residual = pred.target.reshape(len(pred.target), -1) - values
    return {"mae": float(np.abs(residual).mean()), "rmse": float(np.sqrt((residual**2).mean()))}


def analyse_errors(
    pred: Predictions, spec: Any, featurizer: Any, examples: Any, slices: list[str]
) -> ErrorAnalysis:
    """The error analysis of one test split.

    Args:
        pred: The test predictions, in the split's order.
        spec: The run's DataSpec.
        featurizer: The run's featurizer (tables: to recover the user's columns).
        examples: ``indices -> inputs to show``: a DataFrame of table rows, a list of texts,
            or ``(N, C, H, W)`` images.
        slices: Columns of table data to report metrics per value of.
    """
    out = ErrorAnalysis(worst=worst_predictions(pred, spec))
    if spec.target_kind == "categorical":
        out.confused = confused_pairs(pred, list(spec.class_names))
    if out.worst:
        shown = examples([row["test row"] for row in out.worst])
        if isinstance(shown, pd.DataFrame):
            out.worst = [
                row | record for row, record in zip(out.worst, records(shown), strict=True)
            ]
        elif isinstance(shown, list) and all(isinstance(text, str) for text in shown):
            out.worst = [row | {"text": snippet(text)} for row, text in zip(out.worst, shown, strict=True)]  # fmt: skip
        elif shown is not None:
            out.gallery = gallery(shown, out.worst)
    if slices:
        out.slices, notes = slices_of(pred, spec, featurizer, examples, slices)
        out.notes += notes
    return out


def slices_of(
    pred: Predictions, spec: Any, featurizer: Any, examples: Any, slices: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    if getattr(featurizer, "kind", None) != "tabular":
        return {}, ["report.slices applies to table data; this run reads other inputs."]
    frame = examples(list(range(len(pred.target))))
    kinds = {c.name: c.kind for c in featurizer.columns}
    out, notes = {}, []
    for name in slices:
        if name not in kinds:
            notes.append(
                f"report.slices names '{name}', which is not an input column of this run "
                f"(input columns: {', '.join(kinds)})."
            )
            continue
        out[name] = slice_metrics(pred, spec, frame[name], kinds[name] == "numeric")
    return out, notes


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Table rows for display: numbers to 4 significant digits, as the user wrote them."""
    shown = frame.apply(lambda c: c.map("{:.4g}".format) if c.dtype.kind == "f" else c)
    return shown.to_dict("records")


def snippet(text: str, length: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= length else text[: length - 1] + "…"


def gallery(images: Any, rows: list[dict[str, Any]]) -> bytes:
    """The worst images, each min-max scaled, captioned true / predicted (probability)."""
    from torchlab.report.analysis import _plt

    plt = _plt()
    cols = min(4, len(rows))
    lines = -(-len(rows) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(2.4 * cols, 2.6 * lines), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, row in zip(axes.ravel(), images, rows, strict=False):
        image = np.asarray(image, dtype=np.float32)
        image = (image - image.min()) / (image.max() - image.min() + 1e-8)
        ax.imshow(image[:3].transpose(1, 2, 0) if image.shape[0] >= 3 else image[0], cmap="gray")
        ax.set_title(caption(row), fontsize=8)
    return png(fig)


def caption(row: dict[str, Any]) -> str:
    if "true" in row:
        return f"true {row['true']}\npred {row['predicted']} ({row['p(predicted)']:.2f})"
    return f"absolute error {row['absolute error']:.3g}"


def test_examples(bundle: Any) -> Any:
    """``indices -> inputs to show`` of a bundle's test split: table rows as the user's
    columns, raw texts, or images; None where the inputs cannot be shown."""
    split, featurizer = bundle.test, bundle.featurizer
    kind = getattr(featurizer, "kind", None)
    texts = (bundle.baseline_inputs or {}).get("test")

    def pick(indices: list[int]) -> Any:
        if kind == "tabular" and hasattr(split, "inputs"):  # not a streamed table
            return table_rows(featurizer, split.inputs[indices])
        if kind == "text" and texts is not None and len(texts) == len(split):
            return [str(texts[i]) for i in indices]
        if kind == "text" and hasattr(split, "ids"):
            return [featurizer.tokenizer.decode(split.ids[i]) for i in indices]
        if kind in ("image", "pixels") and hasattr(split, "inputs"):
            return split.inputs[indices]
        if kind in ("image", "pixels") and hasattr(split, "read"):
            return [split.read(i) for i in indices]
        return None

    return pick
