"""torchlab.sklearn estimators in scikit-learn's own machinery, on real small data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from torchlab.errors import ConfigError
from torchlab.sklearn import Classifier, Regressor


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, ...]:
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]  # string labels round-trip
    return tuple(train_test_split(x, names, test_size=0.3, random_state=0, stratify=y))


def test_classifier_in_a_pipeline(iris: tuple[np.ndarray, ...]) -> None:
    x_train, x_test, y_train, y_test = iris
    model = make_pipeline(StandardScaler(), Classifier(hidden=(32,), max_epochs=40, lr=1e-2))
    model.fit(x_train, y_train)
    assert model.score(x_test, y_test) >= 0.9
    proba = model.predict_proba(x_test)
    assert proba.shape == (len(x_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(model.predict(x_test)) <= {"setosa", "versicolor", "virginica"}
    assert list(model[-1].classes_) == ["setosa", "versicolor", "virginica"]


def test_same_random_state_trains_the_same_model(iris: tuple[np.ndarray, ...]) -> None:
    x_train, x_test, y_train, _ = iris
    a = Classifier(hidden=(16,), max_epochs=5).fit(x_train, y_train).predict_proba(x_test)
    b = Classifier(hidden=(16,), max_epochs=5).fit(x_train, y_train).predict_proba(x_test)
    c = Classifier(hidden=(16,), max_epochs=5, random_state=1).fit(x_train, y_train)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c.predict_proba(x_test))


def test_params_clone_and_grid_search(iris: tuple[np.ndarray, ...]) -> None:
    x_train, _, y_train, _ = iris
    estimator = Classifier(hidden=(8,), max_epochs=3)
    assert estimator.get_params()["hidden"] == (8,)
    assert estimator.set_params(lr=0.02) is estimator and estimator.lr == 0.02
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params() and not hasattr(copy, "module_")
    search = GridSearchCV(
        make_pipeline(StandardScaler(), Classifier(hidden=(16,), max_epochs=10)),
        {"classifier__lr": [1e-4, 3e-2]},
        cv=2,
    )
    search.fit(x_train, y_train)
    assert search.best_params_ == {"classifier__lr": 3e-2}  # 1e-4 barely moves in 10 epochs


@pytest.mark.slow
def test_regressor_cross_validation_and_early_stopping() -> None:
    x, y = load_diabetes(return_X_y=True)
    model = make_pipeline(
        StandardScaler(), Regressor(hidden=(32,), max_epochs=200, lr=3e-3, early_stopping=True)
    )
    scores = cross_val_score(model, x, y, cv=3, scoring="r2")
    assert scores.mean() > 0.3
    fitted = model.fit(x, y)[-1]
    assert fitted.n_iter_ < 200  # stopped early on the held-out rows
    two_targets = Regressor(hidden=(16,), max_epochs=5).fit(x, np.stack([y, -y], axis=1))
    assert two_targets.predict(x[:4]).shape == (4, 2)


def test_bad_settings_are_clear_errors(iris: tuple[np.ndarray, ...]) -> None:
    x_train, _, y_train, _ = iris
    with pytest.raises(ConfigError, match=r"optim\.name"):
        Classifier(optimizer="adamm").fit(x_train, y_train)
    with pytest.raises(ConfigError, match=r"model\.widht"):
        Classifier(model="mlp", model_params={"widht": 3}).fit(x_train, y_train)
    with pytest.raises(ValueError, match="one class"):
        Classifier().fit(x_train[:5], ["a"] * 5)


# scikit-learn's own checks, one test each. They fit on a few hundred rows dozens of times, so
# the estimators train small and short (one 8-unit layer, 4 epochs at a high rate): every
# check still runs, including those that demand a fitted score (check_classifiers_train asks
# for accuracy > 0.83, check_regressors_train for R2 > 0.5).
QUICK_ESTIMATORS = [
    Classifier(hidden=(8,), max_epochs=4, lr=3e-2, batch_size=64),
    Regressor(hidden=(8,), max_epochs=4, lr=3e-2, batch_size=64),
]


@parametrize_with_checks(QUICK_ESTIMATORS)
def test_passes_scikit_learns_check_estimator(estimator: Classifier | Regressor, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)
