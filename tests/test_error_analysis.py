"""Error analysis in reports: the worst test predictions, the most-confused class pairs and
metrics per slice of the columns a user names (``report.slices``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import torchlab
from torchlab.data.base import DataSpec
from torchlab.data.tabular import TabularFeaturizer
from torchlab.report.analysis import Predictions
from torchlab.report.error_analysis import (
    UNSEEN,
    confused_pairs,
    slice_metrics,
    table_rows,
    worst_predictions,
)


@pytest.fixture(scope="module")
def wine_predictions() -> tuple[Predictions, DataSpec]:
    """A classical model's probabilities on scikit-learn's wine data, held out."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.naive_bayes import GaussianNB

    data = load_wine()
    x_tr, x_te, y_tr, y_te = train_test_split(data.data, data.target, test_size=0.5, random_state=0)
    probs = GaussianNB().fit(x_tr[:, :2], y_tr).predict_proba(x_te[:, :2])  # 2 features: errs
    spec = DataSpec((2,), "categorical", class_names=tuple(data.target_names))
    return Predictions(probs, y_te), spec


def test_worst_predictions_have_the_lowest_true_class_probability(wine_predictions: Any) -> None:
    pred, spec = wine_predictions
    worst = worst_predictions(pred, spec, count=5)
    p_true = pred.scores[np.arange(len(pred.target)), pred.target]
    assert [row["test row"] for row in worst] == np.argsort(p_true, kind="stable")[:5].tolist()
    assert [row["p(true)"] for row in worst] == sorted(p_true)[:5]
    for row in worst:
        assert row["true"] == spec.class_names[pred.target[row["test row"]]]
        assert row["predicted"] == spec.class_names[pred.scores[row["test row"]].argmax()]


def test_confused_pairs_are_the_largest_off_diagonal_counts(wine_predictions: Any) -> None:
    from sklearn.metrics import confusion_matrix

    pred, spec = wine_predictions
    pairs = confused_pairs(pred, list(spec.class_names))
    matrix = confusion_matrix(pred.target, pred.scores.argmax(1))
    off = sorted((matrix[i, j] for i in range(3) for j in range(3) if i != j and matrix[i, j]), reverse=True)  # fmt: skip
    assert [p["count"] for p in pairs] == off[:5]
    names = list(spec.class_names)
    for p in pairs:
        i, j = names.index(p["true"]), names.index(p["predicted as"])
        assert p["count"] == matrix[i, j] and p["share of true class"] == matrix[i, j] / matrix[i].sum()  # fmt: skip


def test_slices_count_every_row_and_score_it(wine_predictions: Any) -> None:
    pred, spec = wine_predictions
    group = pd.Series(np.where(np.arange(len(pred.target)) % 3 == 0, "a", "b"))
    rows = slice_metrics(pred, spec, group, numeric=False)
    assert [r["value"] for r in rows] == ["a", "b"]
    assert sum(r["count"] for r in rows) == len(pred.target)
    hits = pred.scores.argmax(1) == pred.target
    assert rows[0]["accuracy"] == pytest.approx(hits[group == "a"].mean())
    binned = slice_metrics(pred, spec, pd.Series(np.arange(len(pred.target)) * 0.5), numeric=True)
    assert len(binned) == 4 and sum(r["count"] for r in binned) == len(pred.target)


def test_table_rows_recover_the_users_columns() -> None:
    frame = pd.DataFrame(
        {"city": ["paris", "lyon", None, "nice"], "age": [30.0, np.nan, 51.5, 22.0]}
    )
    featurizer = TabularFeaturizer.fit(frame)
    new = pd.DataFrame({"city": ["lyon", "marseille"], "age": [40.25, 18.0]})
    rows = table_rows(featurizer, featurizer.transform(new, warn=False))
    assert rows["city"].tolist() == ["lyon", UNSEEN]
    np.testing.assert_allclose(rows["age"], [40.25, 18.0], rtol=1e-6)
    again = featurizer.transform(rows, warn=False)  # what permutation importance feeds back
    np.testing.assert_array_equal(again.numpy(), featurizer.transform(new, warn=False).numpy())


def houses(rows: int, seed: int) -> pd.DataFrame:
    """House sales as an agency exports them: a district, a size, a price."""
    rng = np.random.default_rng(seed)
    district = rng.choice(["north", "south", "harbour"], rows)
    size = rng.integers(30, 200, rows)
    price = 2.0 * size + 80 * (district == "harbour") + rng.normal(0, 20, rows)
    return pd.DataFrame({"district": district, "size_m2": size, "price": price.round(1)})


def test_regression_report_shows_the_largest_errors_and_slices(tmp_path: Path) -> None:
    houses(200, seed=0).to_csv(tmp_path / "sales.csv", index=False)
    overrides = {
        "data.source": {"name": "csv", "path": str(tmp_path / "sales.csv"), "target": "price"},
        "task": "regression", "baseline": {"name": "ridge"},
        "report.slices": ["district", "rooms"], "trainer.max_epochs": 2,
        "trainer.progress": "none", "data.num_workers": 0,
    }  # fmt: skip
    run = torchlab.train("diabetes", overrides, output_dir=tmp_path / "runs")
    html = (run.dir / "report.html").read_text()
    errors = html[html.index('<section id="errors">') : html.index('<section id="data">')]
    assert "The test rows with the largest absolute error." in errors
    assert "<th>true price</th><th>predicted price</th><th>absolute error</th>" in errors
    assert "<th>district</th><th>size_m2</th>" in errors  # the rows as the user wrote them
    assert "Metrics per slice of district" in errors and "<th>mae</th><th>rmse</th>" in errors
    table = errors[errors.index("Metrics per slice of district") :]
    counts = re.findall(r"<td>(harbour|north|south)</td>\s*<td>(\d+)</td>", table)
    assert [name for name, _ in counts] == ["harbour", "north", "south"]
    sizes = json.loads((run.dir / "data.json").read_text())["sizes"]
    assert sum(int(n) for _, n in counts) == sizes["test"]
    assert "report.slices names &#39;rooms&#39;, which is not an input column" in errors
    assert "Most-confused" not in errors
    assert "Global importance: mean |integrated gradients| per column" in html
