"""Tabular sources and the tabular featurizer, on real small files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split

from torchlab.data import load_featurizer
from torchlab.data.base import DataBundle, SourceContext, TargetKind
from torchlab.data.splits import split_indices
from torchlab.data.tabular import TabularFeaturizer
from torchlab.errors import DataError
from torchlab.registry import DATASETS


def context(kind: TargetKind = "categorical", *, stratify: bool = True) -> SourceContext:
    return SourceContext(val=0.1, test=0.2, stratify=stratify, seed=0, target_kind=kind)


def build(name: str, kind: TargetKind = "categorical", **params: object) -> DataBundle:
    """Build a source the way a run does: through the registry, settings validated."""
    return DATASETS.get(name).build(params, "data.source", context(kind))


def table(n: int = 60, seed: int = 1) -> pd.DataFrame:
    """Numbers, a category, a bool and a two-class label, with no blanks."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.normal(40, 10, n).round(1),
            "income": rng.exponential(1000, n).round(2),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "member": rng.choice([True, False], n),
            "label": rng.choice(["no", "yes"], n),
        }
    )


def write_csv(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def train_rows(n: int, labels: np.ndarray | None = None) -> np.ndarray:
    return split_indices(n, val=0.1, test=0.2, seed=0, stratify=labels)[0]


# --- scikit-learn sources -----------------------------------------------------------------

SKLEARN = [
    ("iris", datasets.load_iris, "categorical", 4),
    ("wine", datasets.load_wine, "categorical", 13),
    ("breast-cancer", datasets.load_breast_cancer, "categorical", 30),
    ("diabetes", datasets.load_diabetes, "continuous", 10),
]


@pytest.mark.parametrize(("name", "loader", "kind", "width"), SKLEARN)
def test_sklearn_source_shapes_names_and_split(name, loader, kind, width):
    bunch = loader(as_frame=True)
    bundle = build(name, kind)
    n = len(bunch.frame)
    assert bundle.spec.input_shape == (width,)
    assert sum(bundle.summary["sizes"].values()) == n
    assert bundle.train.inputs.dtype == torch.float32
    assert bundle.train.inputs.shape == (bundle.summary["sizes"]["train"], width)
    stratify = bunch.target if kind == "categorical" else None
    _, expected = train_test_split(np.arange(n), test_size=0.2, stratify=stratify, random_state=0)
    expected = np.sort(expected)
    assert torch.equal(bundle.test.inputs, bundle.featurizer.transform(bunch.data.iloc[expected]))
    if kind == "categorical":
        assert bundle.spec.class_names == tuple(bunch.target_names)
        assert bundle.test.target.dtype == torch.int64
        assert bundle.test.target.tolist() == bunch.target.to_numpy()[expected].tolist()
        counts = bundle.summary["class_counts"]["test"]
        assert counts == dict(
            zip(bunch.target_names, np.bincount(bunch.target[expected]).tolist(), strict=True)
        )
    else:
        assert bundle.test.target.shape == (len(expected), 1)
        train = bunch.target.to_numpy()[train_rows(n)]
        assert bundle.spec.target_mean == pytest.approx((train.mean(),))
        assert bundle.spec.target_std == pytest.approx((train.std(),))


def test_sklearn_source_rejects_the_wrong_task():
    with pytest.raises(DataError, match=r"continuous targets.*regression task"):
        build("diabetes", "categorical")


# --- featurizer ---------------------------------------------------------------------------


def test_standardisation_uses_train_rows_only(tmp_path):
    frame = table()
    bundle = build("csv", path=write_csv(frame, tmp_path / "d.csv"), target="label", drop=["id"])
    labels = np.unique(frame["label"], return_inverse=True)[1]
    train = frame.iloc[train_rows(len(frame), labels)]
    age = next(c for c in bundle.featurizer.columns if c.name == "age")
    assert age.mean == pytest.approx(train["age"].mean())
    assert age.std == pytest.approx(train["age"].std(ddof=0))
    assert age.mean != pytest.approx(frame["age"].mean())  # the whole file would differ
    expected = (train["age"].to_numpy() - train["age"].mean()) / train["age"].std(ddof=0)
    got = bundle.train.inputs[:, bundle.featurizer.feature_names.index("age")]
    assert got.numpy() == pytest.approx(expected, abs=1e-5)
    assert bundle.summary["numeric_columns"] == ["age", "income"]
    assert bundle.summary["categorical_columns"] == ["city", "member"]


def test_blanks_get_the_train_median_and_are_reported(tmp_path):
    frame = table()
    frame.loc[[3, 10, 40], "age"] = np.nan
    frame.loc[[5], "city"] = np.nan
    path = write_csv(frame, tmp_path / "d.csv")
    with pytest.warns(
        UserWarning, match=r"Filled blanks in d\.csv: 'age' 3 with [\d.]+, 'city' 1 with '\w+'"
    ):
        bundle = build("csv", path=path, target="label", drop=["id"])
    labels = np.unique(frame["label"], return_inverse=True)[1]
    train = frame.iloc[train_rows(len(frame), labels)]
    median = train["age"].median()
    assert median != frame["age"].median()
    assert bundle.summary["imputed"]["age"] == {"count": 3, "fill": median}
    assert json.loads(json.dumps(bundle.summary)) == bundle.summary  # saved as data.json
    assert bundle.summary["imputed"]["city"] == {"count": 1, "fill": train["city"].mode().min()}
    age = next(c for c in bundle.featurizer.columns if c.name == "age")
    filled = train["age"].fillna(median)
    assert age.mean == pytest.approx(filled.mean())
    assert age.std == pytest.approx(filled.std(ddof=0))


def test_categorical_columns_are_one_hot(tmp_path):
    frame = table()
    frame["zone"] = frame["id"] % 3 + 1
    path = write_csv(frame, tmp_path / "d.csv")
    bundle = build("csv", path=path, target="label", drop=["id"], categorical=["zone"])
    names = bundle.featurizer.feature_names
    assert names == [
        "age", "income", "city=lyon", "city=nice", "city=paris",
        "member=False", "member=True", "zone=1", "zone=2", "zone=3",
    ]  # fmt: skip
    x = torch.cat([bundle.train.inputs, bundle.val.inputs, bundle.test.inputs])
    for prefix in ("city=", "member=", "zone="):
        block = x[:, [i for i, name in enumerate(names) if name.startswith(prefix)]]
        assert set(block.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(block.sum(1), torch.ones(len(x)))


def test_unseen_category_is_zeros_with_one_warning(tmp_path):
    frame = table()
    bundle = build("csv", path=write_csv(frame, tmp_path / "d.csv"), target="label", drop=["id"])
    new = frame.head(3).assign(city=["paris", "rome", "oslo"]).drop(columns="label")
    with pytest.warns(UserWarning, match="'city'.*'oslo', 'rome'") as caught:
        x, _ = bundle.featurizer.load_inputs([Path(write_csv(new, tmp_path / "new.csv"))])
    assert len(caught) == 1
    city = [i for i, name in enumerate(bundle.featurizer.feature_names) if name.startswith("city=")]
    assert x[:, city].sum(1).tolist() == [1.0, 0.0, 0.0]


def test_featurizer_json_round_trip_gives_identical_tensors(tmp_path):
    frame = table()
    frame.loc[[2, 7], "income"] = np.nan
    with pytest.warns(UserWarning, match="Filled blanks"):
        bundle = build("csv", path=write_csv(frame, tmp_path / "d.csv"), target="label")
    state = json.loads(json.dumps(bundle.featurizer.to_dict()))
    assert state["kind"] == "tabular"
    loaded = load_featurizer(state)
    assert isinstance(loaded, TabularFeaturizer)
    assert loaded == bundle.featurizer
    assert torch.equal(loaded.transform(frame), bundle.featurizer.transform(frame))


def test_load_inputs_reproduces_the_model_inputs(tmp_path):
    frame = table()
    bundle = build("csv", path=write_csv(frame, tmp_path / "d.csv"), target="label", drop=["id"])
    labels = np.unique(frame["label"], return_inverse=True)[1]
    test_rows = split_indices(len(frame), val=0.1, test=0.2, seed=0, stratify=labels)[2]
    rows = frame.iloc[test_rows].drop(columns="label")  # no target at predict time
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, ids = bundle.featurizer.load_inputs([Path(write_csv(rows, tmp_path / "new.csv"))])
    assert torch.equal(x, bundle.test.inputs)
    assert ids[:2] == ["new.csv:0", "new.csv:1"]
    assert len(ids) == len(test_rows)


def test_parquet_matches_csv(tmp_path):
    frame = table()
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    from_csv = build("csv", path=write_csv(frame, tmp_path / "d.csv"), target="label")
    from_parquet = build("parquet", path=str(tmp_path / "d.parquet"), target="label")
    for split in ("train", "val", "test"):
        assert torch.equal(from_csv.split(split).inputs, from_parquet.split(split).inputs)
        assert torch.equal(from_csv.split(split).target, from_parquet.split(split).target)
    assert from_csv.spec == from_parquet.spec
    x, ids = from_csv.featurizer.load_inputs([tmp_path / "d.parquet"])  # predict from either format
    assert x.shape == (len(frame), from_csv.spec.input_shape[0])
    assert ids[-1] == f"d.parquet:{len(frame) - 1}"


def test_tsv_with_its_separator(tmp_path):
    frame = table()
    frame.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    bundle = build("csv", path=str(tmp_path / "d.tsv"), target="label")
    assert bundle.spec.class_names == ("no", "yes")


def test_multilabel_target(tmp_path):
    frame = table()
    frame["red"], frame["big"] = frame["id"] % 2, (frame["id"] % 3 == 0).astype(int)
    path = write_csv(frame, tmp_path / "d.csv")
    bundle = build("csv", "multilabel", path=path, target=["red", "big"], drop=["label"])
    assert bundle.spec.target_kind == "multilabel"
    assert bundle.spec.class_names == ("red", "big")
    assert bundle.train.target.dtype == torch.float32
    assert bundle.train.target.shape == (bundle.summary["sizes"]["train"], 2)
    positives = bundle.summary["class_counts"]["train"]
    assert positives == {
        "red": int(bundle.train.target[:, 0].sum()),
        "big": int(bundle.train.target[:, 1].sum()),
    }
    assert "red" not in bundle.featurizer.feature_names


def test_multi_output_regression_target(tmp_path):
    frame = table()
    path = write_csv(frame, tmp_path / "d.csv")
    bundle = build("csv", "continuous", path=path, target=["age", "income"], drop=["label"])
    assert bundle.spec.target_names == ("age", "income")
    assert bundle.train.target.shape == (bundle.summary["sizes"]["train"], 2)
    train = frame.iloc[train_rows(len(frame))]
    assert bundle.spec.target_mean == pytest.approx(tuple(train[["age", "income"]].mean()))
    assert bundle.spec.target_std == pytest.approx(tuple(train[["age", "income"]].std(ddof=0)))
    assert torch.equal(
        bundle.train.target, torch.tensor(train[["age", "income"]].to_numpy(), dtype=torch.float32)
    )
    assert "class_counts" not in bundle.summary


# --- bad input ----------------------------------------------------------------------------


def error(tmp_path: Path, text: str, kind: TargetKind = "categorical", **params: object) -> str:
    """The message of the DataError that building a CSV holding ``text`` raises."""
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        build("csv", kind, path=str(path), **{"target": "y", **params})
    return str(caught.value)


def rows(header: str, lines: list[str]) -> str:
    return "\n".join([header, *lines]) + "\n"


GOOD = [f"{i},{i % 2}" for i in range(20)]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv' does not exist"):
        build("csv", path=str(tmp_path / "nope.csv"), target="y")
    with pytest.raises(DataError, match="is a directory"):
        build("csv", path=str(tmp_path), target="y")


@pytest.mark.parametrize("text", ["", "x,y\n"], ids=["zero-bytes", "header-only"])
def test_empty_file(tmp_path, text):
    assert "bad.csv' has no data rows" in error(tmp_path, text)


def test_unknown_target_suggests_the_closest(tmp_path):
    message = error(tmp_path, rows("x,species", GOOD), target="specis")
    assert "'specis'" in message and "did you mean 'species'" in message
    assert "bad.csv" in message and "x, species" in message


def test_near_numeric_column_names_value_and_line(tmp_path):
    lines = [*GOOD[:5], "oops,1", *GOOD[5:]]  # data row 5 -> line 7
    message = error(tmp_path, rows("x,y", lines))
    assert "'x'" in message and "bad.csv" in message and "'oops'" in message
    assert "line 7" in message and "blank out" in message


def test_mostly_text_column_is_categorical(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(rows("x,y", [f"{'abc'[i % 3]},{i % 2}" for i in range(18)] + ["5,0"]))
    bundle = build("csv", path=str(path), target="y")
    assert bundle.summary["categorical_columns"] == ["x"]


def test_blank_target_names_the_row(tmp_path):
    message = error(tmp_path, rows("x,y", [*GOOD[:3], "3,", *GOOD[4:]]))
    assert "'y'" in message and "bad.csv" in message and "row 3 (line 5)" in message


def test_infinite_value_names_column_and_row(tmp_path):
    message = error(tmp_path, rows("x,y", [*GOOD[:8], "inf,0", *GOOD[9:]]))
    assert "'x'" in message and "inf, not a finite number" in message and "line 10" in message


def test_single_class_target(tmp_path):
    message = error(tmp_path, rows("x,y", [f"{i},1" for i in range(10)]))
    assert "single class" in message and "'y'" in message and "bad.csv" in message


def test_garbled_file_names_the_file(tmp_path):
    message = error(tmp_path, rows("x,y", ["1,0", "2,1,7,8", "3,0"]))
    assert "Cannot read" in message and "bad.csv" in message


def test_wrong_format_names_the_file(tmp_path):
    (tmp_path / "d.csv").write_text(rows("x,y", GOOD))
    with pytest.raises(DataError, match=r"d\.csv' as a Parquet file"):
        build("parquet", path=str(tmp_path / "d.csv"), target="y")
    pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}).to_parquet(tmp_path / "p.csv")
    with pytest.raises(DataError, match=r"p\.csv' is binary"):
        build("csv", path=str(tmp_path / "p.csv"), target="y")


def test_bad_targets_for_each_task(tmp_path):
    assert "'cat', not a finite number, at row 1 (line 3)" in error(
        tmp_path, rows("x,y", ["1,2.5", "2,cat"]), "continuous"
    )
    assert "use 0 or 1" in error(tmp_path, rows("x,y", ["1,1", "2,3"]), "multilabel")
    assert "one column" in error(tmp_path, rows("x,y,z", ["1,1,0", "2,0,1"]), target=["y", "z"])


def test_predict_without_a_feature_column(tmp_path):
    bundle = build("csv", path=write_csv(table(), tmp_path / "d.csv"), target="label")
    new = write_csv(table().drop(columns=["income", "label"]), tmp_path / "new.csv")
    with pytest.raises(DataError, match=r"new\.csv lacks the column\(s\) 'income'"):
        bundle.featurizer.load_inputs([Path(new)])
    bad = write_csv(table().assign(age="old"), tmp_path / "text.csv")
    with pytest.raises(
        DataError, match=r"'age' of text\.csv holds 'old', .* at row 0 \(line 2\) \(and 59 more\)"
    ):
        bundle.featurizer.load_inputs([Path(bad)])
