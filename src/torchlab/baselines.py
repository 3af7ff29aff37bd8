"""Classical baselines reported beside every deep model, so a user sees whether deep learning paid off.

A baseline is fitted on the training and validation splits together (it has no epochs to
choose, so it needs no validation data) and scored on the same test split as the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from torchlab.data.base import DataBundle, TargetKind, TensorSplit
from torchlab.registry import BASELINES


@BASELINES.register("logistic_regression")
def logistic_regression(kind: TargetKind, /, *, C: float = 1.0, max_iter: int = 2000) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=max_iter)


@BASELINES.register("svc")
def svc(
    kind: TargetKind, /, *, C: float = 1.0, gamma: float | str = "scale", kernel: str = "rbf"
) -> Any:
    """Support-vector classifier; ``gamma=0.001`` is scikit-learn's classic digits setting."""
    from sklearn.svm import SVC

    return SVC(C=C, gamma=gamma, kernel=kernel)


@BASELINES.register("ridge")
def ridge(kind: TargetKind, /, *, alpha: float = 1.0) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha)


@BASELINES.register("random_forest")
def random_forest(
    kind: TargetKind, /, *, n_estimators: int = 300, max_depth: int | None = None, seed: int = 0
) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestRegressor if kind == "continuous" else RandomForestClassifier
    return cls(n_estimators=n_estimators, max_depth=max_depth, random_state=seed)


def arrays(bundle: DataBundle, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Baseline features (flattened model inputs unless the source says otherwise) and targets."""
    split = bundle.split(name)
    if bundle.baseline_inputs is not None:
        x = np.asarray(bundle.baseline_inputs[name])
    else:
        x = split.inputs.reshape(len(split), -1).numpy()
    y = split.target.numpy()
    return x, (y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y)


def run_baseline(component: Any, bundle: DataBundle) -> dict[str, Any] | None:
    """Fit the baseline a config names and score it on the test split.

    Returns None when the data does not fit in memory as arrays.
    """
    if component is None or not all(
        isinstance(s, TensorSplit) for s in (bundle.train, bundle.val, bundle.test)
    ):
        return None
    from sklearn import metrics

    kind = bundle.spec.target_kind
    estimator = BASELINES.build(component, "baseline", kind)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (arrays(bundle, n) for n in ("train", "val", "test"))
    estimator.fit(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    pred = estimator.predict(x_te)
    if kind == "continuous":
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
