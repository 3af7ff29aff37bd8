"""Classical baselines reported beside every deep model, so a user sees whether deep learning paid off.

A baseline is fitted on the training and validation splits together (it has no epochs to
choose, so it needs no validation data) and scored on the same test split as the model.
Builders live in this package's modules (``estimators`` for scikit-learn ones) and register
in :data:`torchlab.registry.BASELINES`. A builder returns either a scikit-learn estimator,
fitted here on arrays, or an object with ``evaluate(bundle) -> BaselineResult`` that scores
itself on the bundle (the classical forecasters, refitted per test window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torchlab.data.base import DataBundle, TensorSplit
from torchlab.registry import BASELINES


@dataclass(frozen=True)
class BaselineResult:
    """What a baseline scored: the best method's row and one row per method tried.

    A row is ``{"name": ..., "test/<metric>": ...}``; a row with ``"error"`` records a method
    that could not run on this data. ``best`` is None when no method produced scores.
    """

    best: dict[str, Any] | None
    table: list[dict[str, Any]] = field(default_factory=list)


def arrays(bundle: DataBundle, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Baseline features (flattened model inputs unless the source says otherwise) and targets."""
    split = bundle.split(name)
    if bundle.baseline_inputs is not None:
        x = np.asarray(bundle.baseline_inputs[name])
    else:
        x = split.inputs.reshape(len(split), -1).numpy()
    if bundle.baseline_targets is not None:
        y = np.asarray(bundle.baseline_targets[name])
    else:
        y = split.target.numpy()
    return x, (y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y)


def run_baseline(component: Any, bundle: DataBundle) -> BaselineResult | None:
    """Fit the baseline a config names and score it on the test split.

    Returns None when no baseline is configured, or when the data does not fit in memory as
    arrays and the source gives no ``baseline_inputs`` and ``baseline_targets`` of its own.
    """
    if component is None:
        return None
    estimator = BASELINES.build(component, "baseline", bundle.spec.target_kind)
    if hasattr(estimator, "evaluate"):
        return estimator.evaluate(bundle)
    in_memory = all(isinstance(s, TensorSplit) for s in (bundle.train, bundle.val, bundle.test))
    own = bundle.baseline_inputs is not None and bundle.baseline_targets is not None
    if not (in_memory or own):
        return None
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (arrays(bundle, n) for n in ("train", "val", "test"))
    estimator.fit(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    scores = _scores(bundle, y_te, estimator.predict(x_te))
    row = {"name": component.name, **{f"test/{k}": float(v) for k, v in scores.items()}}
    return BaselineResult(row, [row])


def _scores(bundle: DataBundle, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    from sklearn import metrics

    if bundle.baseline_metrics is not None:  # the task's own metrics (mean IoU, ...)
        return bundle.baseline_metrics(y_true, y_pred)
    if bundle.spec.target_kind == "continuous":
        return {
            "mae": metrics.mean_absolute_error(y_true, y_pred),
            "rmse": metrics.root_mean_squared_error(y_true, y_pred),
            "r2": metrics.r2_score(y_true, y_pred),
        }
    return {
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "f1": metrics.f1_score(y_true, y_pred, average="macro"),
    }
