"""Classical baselines reported beside every deep model, so a user sees whether deep learning paid off.

A baseline is fitted on the training and validation splits together (it has no epochs to
choose, so it needs no validation data) and scored on the same test split as the model.
Builders live in this package's modules (``estimators`` for scikit-learn ones) and register
in :data:`torchlab.registry.BASELINES`. A builder returns either a scikit-learn estimator,
fitted here on arrays, or an object with ``evaluate(bundle) -> BaselineResult`` that scores
itself on the bundle (the classical forecasters, refitted per test window; the image
baselines, which read files).

A config without ``baseline:`` gets its data source's default when it has one (images:
see :mod:`.images`); ``baseline: none`` turns it off. A run with no baseline says why in
its summary (``baseline_note``) and report.
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
    that could not run on this data. ``best`` is None when no method produced scores, and
    ``note`` then says why.
    """

    best: dict[str, Any] | None
    table: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None  # why there are no scores, when there are none


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


def run_baseline(component: Any, bundle: DataBundle) -> BaselineResult:
    """Fit the baseline a config names (else the data's default) and score it on the test split.

    A result without scores carries a ``note`` saying why: no baseline configured and none
    for this data, or a baseline that needs in-memory arrays this data does not give. A
    default baseline that fails is a note too; it never fails a trained run.
    """
    from torchlab.errors import TorchlabError

    if component is None and bundle.default_baseline is None:
        return BaselineResult(None, note=bundle.baseline_note or NO_BASELINE)
    if component is not None:
        return fit_and_score(component, bundle)
    from torchlab.config import Component

    default = Component.model_validate(bundle.default_baseline)
    try:
        return fit_and_score(default, bundle)
    except (TorchlabError, ValueError, RuntimeError) as exc:  # e.g. a backbone not downloadable
        return BaselineResult(None, note=f"The {default.name} baseline could not run: {exc}")


NO_BASELINE = (
    "No baseline: the config names none (`baseline:`) and this data has no default one; "
    "name one to see whether deep learning pays off here."
)


def fit_and_score(component: Any, bundle: DataBundle) -> BaselineResult:
    estimator = BASELINES.build(component, "baseline", bundle.spec.target_kind)
    if hasattr(estimator, "evaluate"):
        return estimator.evaluate(bundle)
    in_memory = all(isinstance(s, TensorSplit) for s in (bundle.train, bundle.val, bundle.test))
    own = bundle.baseline_inputs is not None and bundle.baseline_targets is not None
    if not (in_memory or own):
        note = (
            f"The {component.name} baseline fits in-memory arrays, and this data is read from files"
        )
        if bundle.default_baseline is not None:
            note += f"; set baseline: {bundle.default_baseline['name']} (or leave baseline: out)"
        return BaselineResult(None, note=note + ".")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (arrays(bundle, n) for n in ("train", "val", "test"))
    estimator.fit(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    metrics = scores(bundle, y_te, estimator.predict(x_te))
    row = {"name": component.name, **{f"test/{k}": float(v) for k, v in metrics.items()}}
    return BaselineResult(row, [row])


@dataclass(frozen=True)
class Off:
    """``baseline: none``: the user turned the baseline off."""

    def evaluate(self, bundle: DataBundle) -> BaselineResult:
        return BaselineResult(None, note="No baseline: the config turns it off (baseline: none).")


@BASELINES.register("none")
def none(kind: Any, /) -> Off:
    """No baseline, and the report says it was turned off."""
    return Off()


def scores(bundle: DataBundle, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
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
