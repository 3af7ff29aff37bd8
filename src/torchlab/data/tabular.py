"""Tabular data: scikit-learn's small tables and the user's CSV or Parquet files.

Every source becomes one pandas DataFrame plus the names of its target column(s); one
function, :func:`build_bundle`, splits it, fits a :class:`TabularFeaturizer` on the training
rows only and encodes inputs and targets. Errors name the file, the column and the line.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from torchlab.data.base import DataBundle, DataSpec, SourceContext, TargetKind, TensorSplit
from torchlab.data.featurizers import FEATURIZERS
from torchlab.data.splits import split_indices
from torchlab.data.tables import (
    Source,
    as_numbers,
    as_text,
    categorical_columns,
    read_table,
    require_columns,
    shown,
)
from torchlab.errors import DataError
from torchlab.notices import notice
from torchlab.registry import DATASETS

TASK = {"categorical": "classification", "continuous": "regression", "multilabel": "multi-label"}


@dataclass(frozen=True)
class Column:
    """How one input column becomes features, learnt from the training rows.

    A numeric column fills blanks with the median, then standardises with the mean and std
    (after filling, like scikit-learn's imputer + scaler); a categorical one fills blanks
    with the most frequent value, then one-hot encodes ``categories`` (others -> zeros).
    """

    name: str
    kind: Literal["numeric", "categorical"]
    fill: float | str
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()

    @classmethod
    def fit(cls, values: pd.Series, source: Source, categorical: bool) -> Column:
        name = str(values.name)
        if values.isna().all():
            raise DataError(
                f"Column '{name}' of {source.name} has no values in the training split; "
                "fill it in or list it in data.source.drop."
            )
        if categorical:
            counts = as_text(values).value_counts()
            fill = min(counts.index[counts.to_numpy() == counts.max()])  # ties: first in order
            return cls(name, "categorical", fill, categories=tuple(sorted(counts.index)))
        numbers = as_numbers(values, source)
        fill = float(np.nanmedian(numbers))
        filled = np.where(np.isnan(numbers), fill, numbers)
        std = float(filled.std()) if np.ptp(filled) > 0 else 1.0  # a constant column: std 0 -> 1
        return cls(name, "numeric", fill, float(filled.mean()), std)

    @property
    def features(self) -> list[str]:
        return [f"{self.name}={c}" for c in self.categories] if self.categories else [self.name]

    @property
    def width(self) -> int:
        """How many features the column is encoded as."""
        return 1 if self.kind == "numeric" else len(self.categories)

    def encode_into(
        self, out: np.ndarray, values: pd.Series, source: Source, warn: bool = True
    ) -> None:
        """Write the column's features into ``out`` ``(N, width)``, zeros on entry: the
        standardised number (computed in float64), or the one-hot category; ``warn`` names
        the categories not seen in training (encoded as all zeros)."""
        if self.kind == "numeric":
            numbers = as_numbers(values, source)
            filled = np.where(np.isnan(numbers), self.fill, numbers)
            out[:, 0] = (filled - self.mean) / self.std
            return
        text, codes = self.codes(values)
        seen = codes >= 0
        out[np.flatnonzero(seen), codes[seen]] = 1.0
        if warn and not seen.all():
            warn_unseen(self.name, text[~seen], source)

    def codes(self, values: pd.Series) -> tuple[pd.Series, np.ndarray]:
        """A categorical column's values as text (blanks filled) and their index in
        ``categories``, -1 for a value not seen in training."""
        text = as_text(values).astype(object).fillna(self.fill)  # all blank: float64 NaN
        return text, pd.Index(self.categories).get_indexer(text)


@FEATURIZERS.register("tabular")
@dataclass(frozen=True)
class TabularFeaturizer:
    """Table rows -> standardised numbers and one-hot categories, fitted on training rows.

    Attributes:
        columns: The encoded input columns, in feature order.
        ignore: Target and dropped columns, ignored without a warning at predict time.
        sep: Field separator of text files (None: by suffix).
    """

    kind: ClassVar[str] = "tabular"
    columns: tuple[Column, ...]
    ignore: tuple[str, ...] = ()
    sep: str | None = None

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        *,
        categorical: Collection[str] = (),
        source: Source | None = None,
        ignore: Collection[str] = (),
        sep: str | None = None,
    ) -> TabularFeaturizer:
        """Learn fills, scales and categories from ``frame``, the training rows' inputs."""
        source = source or Source("the training frame")
        found = categorical_columns(frame, source, categorical)
        columns = tuple(Column.fit(frame[name], source, name in found) for name in frame.columns)
        return cls(columns, tuple(ignore), sep)

    @property
    def feature_names(self) -> list[str]:
        """One name per feature: ``age``, ``city=paris``, ..."""
        return [feature for column in self.columns for feature in column.features]

    def transform(
        self, frame: pd.DataFrame, source: Source | None = None, *, warn: bool = True
    ) -> torch.Tensor:
        """Model inputs ``(N, F)`` float32 for the rows of ``frame``; other columns are ignored.

        ``warn=False`` leaves out the warning on categories not seen in training (a server
        reports them with :meth:`unseen` instead).
        """
        source = source or Source("the input frame")
        if missing := [c.name for c in self.columns if c.name not in frame.columns]:
            raise DataError(
                f"{source.name} lacks the column(s) {', '.join(map(repr, missing))} the model "
                "was trained with; add them (blank values are imputed)."
            )
        out = np.zeros((len(frame), sum(column.width for column in self.columns)), np.float32)
        start = 0
        for column in self.columns:  # written in place: no float64 copy of the whole table
            end = start + column.width
            column.encode_into(out[:, start:end], frame[column.name], source, warn)
            start = end
        return torch.from_numpy(out)

    def unseen(self, frame: pd.DataFrame) -> list[tuple[int, str, str]]:
        """``(row position, column, value)`` of each category in ``frame`` not seen in
        training, which :meth:`transform` encodes as all zeros."""
        found = []
        for column in self.columns:
            if column.kind == "categorical":
                text, codes = column.codes(frame[column.name])
                found += [(int(r), column.name, text.iloc[r]) for r in np.flatnonzero(codes < 0)]
        return sorted(found, key=lambda item: item[0])  # stable: columns in feature order

    def imputed(self, frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Column -> ``{"count": blanks, "fill": value}`` for each input column with blanks."""
        blanks = {c: int(frame[c.name].isna().sum()) for c in self.columns}
        return {c.name: {"count": n, "fill": c.fill} for c, n in blanks.items() if n}

    def load_inputs(self, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
        """Inputs read from CSV or Parquet files, and ``"<file name>:<row>"`` ids (rows from 0)."""
        if not paths:
            raise DataError("No input files were given; name at least one CSV or Parquet file.")
        inputs, ids = [], []
        for path in paths:
            frame, source = read_table(path, sep=self.sep)
            self.warn_unused(frame.columns, source)
            inputs.append(self.transform(frame, source))
            ids += [f"{source.name}:{row}" for row in range(len(frame))]
            warn_imputed(self.imputed(frame), source)
        return torch.cat(inputs), ids

    def warn_unused(self, columns: Collection[str], source: Source) -> None:
        """Tell the user which ``columns`` of an input are not used (nor target or dropped)."""
        known = {*self.ignore, *(c.name for c in self.columns)}
        if extra := [name for name in columns if name not in known]:
            notice(f"Ignoring columns of {source.name} unused in training: {', '.join(extra)}.")

    def to_dict(self) -> dict[str, Any]:
        columns = [{**asdict(c), "categories": list(c.categories)} for c in self.columns]
        return {"kind": self.kind, "columns": columns, "ignore": list(self.ignore), "sep": self.sep}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TabularFeaturizer:
        columns = [Column(**{**c, "categories": tuple(c["categories"])}) for c in state["columns"]]
        return cls(tuple(columns), tuple(state["ignore"]), state["sep"])


def warn_imputed(imputed: dict[str, dict[str, Any]], source: Source) -> None:
    """Tell the user which blanks were filled, and with what (see ``imputed``)."""

    def fill(value: float | str) -> str:
        return f"{value:.6g}" if isinstance(value, float) else repr(value)

    if imputed:
        done = ", ".join(f"'{k}' {v['count']} with {fill(v['fill'])}" for k, v in imputed.items())
        notice(f"Filled blanks in {source.name}: {done}.")


def warn_unseen(column: str, values: Collection[str], source: Source) -> None:
    """Tell the user which categories of ``column`` were not seen in training (the first 10)."""
    new = ", ".join(map(repr, sorted(set(values))[:10]))
    notice(
        f"Column '{column}' of {source.name} holds values not seen in training, "
        f"encoded as all zeros: {new}.",
    )


def encode_target(
    frame: pd.DataFrame, kind: TargetKind, source: Source
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The target tensor and its class names (categorical, multilabel) or target names."""
    for name in frame.columns:
        if (blank := frame[name].isna().to_numpy()).any():
            row = source.where(frame.index[np.argmax(blank)])
            raise DataError(
                f"Target column '{name}' of {source.name} is blank at {row}; "
                "fill in the target or delete the row."
            )
    if kind == "categorical":
        if frame.shape[1] != 1:
            raise DataError(
                f"A classification target is one column, not {list(frame.columns)}; name one in "
                "data.source.target, or use a multi-label task for several 0/1 columns."
            )
        values = frame.iloc[:, 0]
        # A categorical dtype (scikit-learn's targets) keeps its order; others sort.
        classes = pd.Categorical(values)
        codes, names = classes.codes.astype(np.int64), tuple(as_text(pd.Series(classes.categories)))
        if len(np.unique(codes)) < 2:
            raise DataError(
                f"Target column '{values.name}' of {source.name} holds a single class "
                f"({names[codes[0]]!r}); a classifier needs two or more, so check that column."
            )
        return torch.from_numpy(codes), names
    fix = f"a {TASK[kind]} target must be numbers, so fix that value"
    numbers = np.stack([as_numbers(frame[c], source, fix) for c in frame.columns], axis=1)
    if kind == "multilabel" and not (binary := np.isin(numbers, (0.0, 1.0))).all():
        row, col = np.argwhere(~binary)[0]
        raise DataError(
            f"Multi-label target column '{frame.columns[col]}' of {source.name} holds "
            f"{shown(frame.iloc[row, col])} at {source.where(frame.index[row])}; use 0 or 1 there."
        )
    return torch.from_numpy(numbers.astype(np.float32)), tuple(frame.columns)


def data_spec(
    kind: TargetKind, width: int, names: tuple[str, ...], train: torch.Tensor
) -> DataSpec:
    """What the model and task need; continuous targets get their training mean and std."""
    if kind != "continuous":
        return DataSpec((width,), kind, class_names=names)
    mean, std = train.double().mean(0).tolist(), train.double().std(0, correction=0).tolist()
    stats = {"target_mean": tuple(mean), "target_std": tuple(s if s > 0 else 1.0 for s in std)}
    return DataSpec((width,), kind, target_names=names, **stats)


def build_bundle(
    frame: pd.DataFrame,
    source: Source,
    target: str | list[str],
    context: SourceContext,
    *,
    categorical: Collection[str] | None = None,
    drop: Collection[str] | None = None,
    sep: str | None = None,
) -> DataBundle:
    """Split one frame, fit the featurizer on its training rows and encode every split.

    Args:
        frame: Inputs and target(s), one row per sample.
        source: Where ``frame`` came from, for messages.
        target: The target column, or several (multi-output regression, multi-label).
        context: Split fractions, seed and the kind of target the task expects.
        categorical: Columns to one-hot even though they hold numbers.
        drop: Columns to ignore (ids).
        sep: Field separator of text files, kept for predict time.
    """
    targets, drop = [target] if isinstance(target, str) else list(target), list(drop or ())
    for key, names in (("target", targets), ("drop", drop), ("categorical", categorical or ())):
        require_columns(frame.columns, names, source, key)
    inputs = frame.drop(columns=[*targets, *drop])
    if inputs.shape[1] == 0:
        raise DataError(f"{source.name} has no input columns besides the target; add some.")
    # Kinds are decided on every row, so a typo outside the training rows raises too.
    found = categorical_columns(inputs, source, [c for c in categorical or () if c in inputs])
    y, names = encode_target(frame[targets], context.target_kind, source)
    stratify = y.numpy() if context.stratify and context.target_kind == "categorical" else None
    index = split_indices(
        len(frame), val=context.val, test=context.test, seed=context.seed, stratify=stratify,
        fold=context.fold, groups=fold_groups(frame, context, source),
    )  # fmt: skip
    splits = dict(zip(("train", "val", "test"), index, strict=True))
    featurizer = TabularFeaturizer.fit(
        inputs.iloc[splits["train"]],
        categorical=found,
        source=source,
        ignore=[*targets, *drop],
        sep=sep,
    )
    x = featurizer.transform(inputs, source)  # (N, F)
    summary = summarise(featurizer, inputs, splits, source)
    if context.target_kind != "continuous":
        summary["class_counts"] = {k: class_counts(y[rows], names) for k, rows in splits.items()}
    return DataBundle(
        **{split: TensorSplit(x[rows], y[rows]) for split, rows in splits.items()},
        spec=data_spec(context.target_kind, x.shape[1], names, y[splits["train"]]),
        featurizer=featurizer,
        summary=summary,
    )


def fold_groups(frame: pd.DataFrame, context: SourceContext, source: Source) -> np.ndarray | None:
    """The values of the column that ``data.split.fold.group`` names (blank: a group too)."""
    group = context.fold.group if context.fold is not None else None
    if group is None:
        return None
    if group not in frame.columns:
        raise DataError(
            f"Column '{group}' named in data.split.fold.group (--group) is not in "
            f"{source.name}; use one of its columns: {', '.join(map(str, frame.columns))}."
        )
    return as_text(frame[group]).fillna("").to_numpy()


def summarise(
    featurizer: TabularFeaturizer, inputs: pd.DataFrame, splits: dict[str, np.ndarray], src: Source
) -> dict[str, Any]:
    """Facts for the run's report: sizes, columns and what was imputed (also a warning)."""
    imputed = featurizer.imputed(inputs)
    warn_imputed(imputed, src)
    kinds = [(c.name, c.kind) for c in featurizer.columns]
    return {
        "source": src.name,
        "sizes": {split: len(rows) for split, rows in splits.items()},
        "num_features": len(featurizer.feature_names),
        "numeric_columns": [name for name, kind in kinds if kind == "numeric"],
        "categorical_columns": [name for name, kind in kinds if kind == "categorical"],
        "imputed": imputed,
    }


def class_counts(target: torch.Tensor, names: tuple[str, ...]) -> dict[str, int]:
    """Samples per class (class indices) or positives per label (multi-label rows)."""
    counts = torch.bincount(target, minlength=len(names)) if target.ndim == 1 else target.sum(0)
    return {name: int(count) for name, count in zip(names, counts.tolist(), strict=True)}


def sklearn_bundle(context: SourceContext, name: str) -> DataBundle:
    """One of scikit-learn's bundled tables (offline), with scikit-learn's class names."""
    from sklearn import datasets  # lazy: only these sources pay for it

    bunch = getattr(datasets, f"load_{name.replace('-', '_')}")(as_frame=True)
    frame, kind = bunch.frame.copy(), "categorical" if "target_names" in bunch else "continuous"
    if context.target_kind != kind:
        raise DataError(
            f"Dataset '{name}' has {kind} targets, but the task expects {context.target_kind} "
            f"ones; use a {TASK[kind]} task with it."
        )
    if kind == "categorical":
        frame["target"] = pd.Categorical.from_codes(bunch.target, list(bunch.target_names))
    return build_bundle(frame, Source(f"scikit-learn's {name} data"), "target", context)


@DATASETS.register("iris")
def iris(context: SourceContext, /) -> DataBundle:
    """Fisher's iris: 150 flowers, 4 measurements, 3 species."""
    return sklearn_bundle(context, "iris")


@DATASETS.register("wine")
def wine(context: SourceContext, /) -> DataBundle:
    """178 Italian wines, 13 chemical measurements, 3 cultivars."""
    return sklearn_bundle(context, "wine")


@DATASETS.register("breast-cancer")
def breast_cancer(context: SourceContext, /) -> DataBundle:
    """569 breast masses, 30 features of their cell nuclei, malignant or benign."""
    return sklearn_bundle(context, "breast-cancer")


@DATASETS.register("diabetes")
def diabetes(context: SourceContext, /) -> DataBundle:
    """442 diabetes patients, 10 baseline measurements, disease progression a year later."""
    return sklearn_bundle(context, "diabetes")


@DATASETS.register("csv")
def csv_file(
    context: SourceContext,
    /,
    *,
    path: str,
    target: str | list[str],
    categorical: list[str] | None = None,
    drop: list[str] | None = None,
    sep: str | None = None,
) -> DataBundle:
    """A delimited text file (``.csv``, ``.tsv``, ``.txt``) with a header row.

    Args:
        path: The file.
        target: The target column, or several (multi-output regression, multi-label).
        categorical: Columns to one-hot even though they hold numbers (codes, ids of groups).
        drop: Columns to ignore, such as row ids.
        sep: Field separator; by default a tab for ``.tsv`` files and a comma otherwise.
    """
    frame, source = read_table(path, parquet=False, sep=sep)
    return build_bundle(frame, source, target, context, categorical=categorical, drop=drop, sep=sep)
