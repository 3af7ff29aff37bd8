"""Classical baselines reported beside every deep model, so a user sees whether deep learning paid off.

A baseline is fitted on the training and validation splits together (it has no epochs to
choose, so it needs no validation data) and scored on the same test split as the model.
Builders live in this package's modules (``estimators`` for scikit-learn ones) and register
in :data:`torchlab.registry.BASELINES`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from torchlab.data.base import DataBundle, TensorSplit
from torchlab.registry import BASELINES


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


def run_baseline(component: Any, bundle: DataBundle) -> dict[str, Any] | None:
    """Fit the baseline a config names and score it on the test split.

    Returns None when the data does not fit in memory as arrays and the source gives no
    ``baseline_inputs`` and ``baseline_targets`` of its own (e.g. raw texts for TF-IDF).
    """
    if getattr(bundle, "series", None) is not None:  # forecasting windows: classical forecasters
        from torchlab.baselines.forecasting import run_forecasting_baselines

        return run_forecasting_baselines(component, bundle)
    in_memory = all(isinstance(s, TensorSplit) for s in (bundle.train, bundle.val, bundle.test))
    own = bundle.baseline_inputs is not None and bundle.baseline_targets is not None
    if component is None or not (in_memory or own):
        return None
    from sklearn import metrics

    kind = bundle.spec.target_kind
    estimator = BASELINES.build(component, "baseline", kind)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (arrays(bundle, n) for n in ("train", "val", "test"))
    estimator.fit(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    pred = estimator.predict(x_te)
    if bundle.baseline_metrics is not None:  # the task's own metrics (mean IoU, ...)
        scores = bundle.baseline_metrics(y_te, pred)
    elif kind == "continuous":
        scores = {
            "mae": metrics.mean_absolute_error(y_te, pred),
            "rmse": metrics.root_mean_squared_error(y_te, pred),
            "r2": metrics.r2_score(y_te, pred),
        }
    else:
        scores = {
            "accuracy": metrics.accuracy_score(y_te, pred),
            "f1": metrics.f1_score(y_te, pred, average="macro"),
        }
    return {"name": component.name, **{f"test/{k}": float(v) for k, v in scores.items()}}
