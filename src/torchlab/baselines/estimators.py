"""scikit-learn estimators for in-memory features: the tabular and image baselines."""

from __future__ import annotations

from typing import Any

from torchlab.data.base import TargetKind
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
