"""Tabular data: scikit-learn's small tables and the user's CSV or Parquet files.

Every source becomes one pandas DataFrame plus the names of its target column(s); one
function, :func:`build_bundle`, splits it, fits a :class:`TabularFeaturizer` on the training
rows only and encodes inputs and targets. Errors name the file, the column and the line.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pandas.api import types

from torchlab.data.base import DataBundle, DataSpec, SourceContext, TargetKind, TensorSplit
from torchlab.data.featurizers import FEATURIZERS
from torchlab.data.splits import split_indices
from torchlab.errors import DataError
from torchlab.registry import DATASETS, closest

BLANKS = "fix or blank out that value (blanks are imputed)"
TASK_FOR = {
    "categorical": "classification",
    "continuous": "regression",
    "multilabel": "multi-label",
}


@dataclass(frozen=True)
class Source:
    """Where rows came from: ``name`` for messages, ``first_line`` of data row 0 in a text file."""

    name: str
    first_line: int | None = None

    def where(self, row: Any) -> str:
        """``row 3 (line 5)`` for a text file (header = line 1), ``row 3`` otherwise."""
        return f"row {row} (line {row + self.first_line})" if self.first_line else f"row {row}"


def read_table(
    path: str | Path, *, parquet: bool | None = None, sep: str | None = None
) -> tuple[pd.DataFrame, Source]:
    """A text or Parquet file as a frame with string column names and rows numbered from 0.

    Args:
        path: The file.
        parquet: Read as Parquet or as delimited text; None decides by the file's suffix.
        sep: Field separator of a text file; None means tab for ``.tsv``, comma otherwise.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"Data file '{path}' does not exist; check the path (from {Path.cwd()}).")
    if not path.is_file():
        raise DataError(f"'{path}' is a directory, not a data file; name a file inside it.")
    parquet = path.suffix.lower() in (".parquet", ".pq") if parquet is None else parquet
    with path.open("rb") as file:
        binary = b"\0" in file.read(8192)
    if binary and not parquet:
        raise DataError(f"'{path}' is binary, not delimited text; use the parquet source for Parquet.")
    sep = sep or ("\t" if path.suffix.lower() == ".tsv" else ",")
    try:
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (ValueError, OSError) as exc:  # pandas' ParserError and pyarrow's errors are ValueErrors
        what = "a Parquet file" if parquet else f"text with fields separated by {sep!r}"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"Cannot read '{path}' as {what} ({reason}); check its format.") from None
    if len(frame) == 0:
        raise DataError(f"Data file '{path}' has no data rows; add rows below the header line.")
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True), Source(path.name, None if parquet else 2)


def require_columns(
    columns: Collection[str], names: Collection[str], source: Source, key: str
) -> None:
    """Raise naming the first of ``names`` (from ``data.source.<key>``) not in ``columns``."""
    for name in (n for n in names if n not in columns):
        hint = closest(name, columns)
        hint = f" (did you mean '{hint}'?)" if hint else ""
        sep = " or set data.source.sep" if len(columns) == 1 else ""
        raise DataError(
            f"Column '{name}' named in data.source.{key} is not in {source.name}{hint}; "
            f"use one of its columns{sep}: {', '.join(columns)}."
        )


def as_text(values: pd.Series) -> pd.Series:
    """Categories and labels as strings, blanks kept blank; 2.0 (ints with blanks) -> '2'."""

    def text(value: Any) -> str:
        integral = isinstance(value, (float, np.floating)) and float(value).is_integer()
        return str(int(value)) if integral else str(value)

    return values.astype(object).map(text, na_action="ignore")


def as_numbers(values: pd.Series, source: Source, fix: str = BLANKS) -> np.ndarray:
    """A column as float64 (NaN where blank); raises at its first non-numeric or infinite value."""
    parsed = values if types.is_numeric_dtype(values) else pd.to_numeric(values, errors="coerce")
    numbers = parsed.to_numpy(float, na_value=np.nan)
    bad = values.notna().to_numpy() & ~np.isfinite(numbers)
    if bad.any():
        row, count = int(np.flatnonzero(bad)[0]), int(bad.sum())
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise DataError(
            f"Column '{values.name}' of {source.name} holds {shown(values.iloc[row])}, not a finite "
            f"number, at {source.where(values.index[row])}{more}; {fix}."
        )
    return numbers


def shown(value: Any) -> str:
    """A cell as a message shows it: ``'oops'``, ``inf``, ``3`` (not ``np.int64(3)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def categorical_columns(
    frame: pd.DataFrame, source: Source, forced: Collection[str] = ()
) -> list[str]:
    """The columns of ``frame`` to one-hot: ``forced``, bool and text ones; the rest are numbers.

    Text that is at least 90% numbers is taken for a numeric column with typos, and raises.
    """
    found = []
    for name in frame.columns:
        values = frame[name]
        if name in forced or types.is_bool_dtype(values):
            found.append(name)
        elif types.is_datetime64_any_dtype(values) or types.is_timedelta64_dtype(values):
            raise DataError(
                f"Column '{name}' of {source.name} holds dates or durations, which tabular "
                "sources cannot use; convert it to numbers or list it in data.source.drop."
            )
        elif not types.is_numeric_dtype(values):
            present = values.dropna()
            if len(present) and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.9:
                as_numbers(
                    values, source, f"{BLANKS}, or list the column in data.source.categorical if it is a category"
                )
            else:
                found.append(name)
    return found


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

    def encode(self, values: pd.Series, source: Source) -> np.ndarray:
        """The column's features, ``(N, 1)`` or ``(N, len(categories))``."""
        if self.kind == "numeric":
            numbers = as_numbers(values, source)
            return ((np.where(np.isnan(numbers), self.fill, numbers) - self.mean) / self.std)[
                :, None
            ]
        text = as_text(values).fillna(self.fill)
        codes = pd.Index(self.categories).get_indexer(text)
        out = np.zeros((len(text), len(self.categories)))
        seen = codes >= 0
        out[np.flatnonzero(seen), codes[seen]] = 1.0
        if not seen.all():
            new = ", ".join(map(repr, sorted(set(text[~seen]))[:10]))
            warnings.warn(
                f"Column '{self.name}' of {source.name} holds values not seen in training, "
                f"encoded as all zeros: {new}.",
                stacklevel=4,
            )
        return out


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
        return [feature for column in self.columns for feature in column.features]

    def transform(self, frame: pd.DataFrame, source: Source | None = None) -> torch.Tensor:
        """Model inputs ``(N, F)`` float32 for the rows of ``frame``; other columns are ignored."""
        source = source or Source("the input frame")
        if missing := [c.name for c in self.columns if c.name not in frame.columns]:
            raise DataError(
                f"{source.name} lacks the column(s) {', '.join(map(repr, missing))} the model "
                "was trained with; add them (blank values are imputed)."
            )
        parts = [column.encode(frame[column.name], source) for column in self.columns]
        return torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32))

    def imputed(self, frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Column -> ``{"count": blanks, "fill": value}`` for each input column with blanks."""
        counts = {c.name: int(frame[c.name].isna().sum()) for c in self.columns}
        return {
            c.name: {"count": counts[c.name], "fill": c.fill}
            for c in self.columns
            if counts[c.name]
        }

    def load_inputs(self, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
        """Inputs read from CSV or Parquet files, and ``"<file name>:<row>"`` ids (rows from 0)."""
        if not paths:
            raise DataError("No input files were given; name at least one CSV or Parquet file.")
        known = {*self.ignore, *(c.name for c in self.columns)}
        inputs, ids = [], []
        for path in paths:
            frame, source = read_table(path, sep=self.sep)
            if extra := [name for name in frame.columns if name not in known]:
                warnings.warn(
                    f"Ignoring columns of {source.name} unknown in training: {', '.join(extra)}.",
                    stacklevel=2,
                )
            inputs.append(self.transform(frame, source))
            ids += [f"{source.name}:{row}" for row in range(len(frame))]
            warn_imputed(self.imputed(frame), source)
        return torch.cat(inputs), ids

    def to_dict(self) -> dict[str, Any]:
        columns = [{**asdict(c), "categories": list(c.categories)} for c in self.columns]
        return {"kind": self.kind, "columns": columns, "ignore": list(self.ignore), "sep": self.sep}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TabularFeaturizer:
        columns = tuple(
            Column(**{**c, "categories": tuple(c["categories"])}) for c in state["columns"]
        )
        return cls(columns, tuple(state["ignore"]), state["sep"])


def warn_imputed(imputed: dict[str, dict[str, Any]], source: Source) -> None:
    if imputed:
        detail = ", ".join(
            f"'{k}' ({v['count']} filled with {v['fill']!r})" for k, v in imputed.items()
        )
        warnings.warn(f"Imputed missing values in {source.name}: {detail}.", stacklevel=3)


def encode_target(
    frame: pd.DataFrame, kind: TargetKind, source: Source
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The target tensor and its class names (categorical, multilabel) or target names."""
    for name in frame.columns:
        if (blank := frame[name].isna().to_numpy()).any():
            raise DataError(
                f"Target column '{name}' of {source.name} is blank at "
                f"{source.where(frame.index[np.argmax(blank)])}; fill in the target or delete the row."
            )
    if kind == "categorical":
        if frame.shape[1] != 1:
            raise DataError(
                f"A classification target is one column, not {list(frame.columns)}; name one in "
                "data.source.target, or use a multi-label task for several 0/1 columns."
            )
        values = frame.iloc[:, 0]
        classes = (
            values.cat if isinstance(values.dtype, pd.CategoricalDtype) else pd.Categorical(values)
        )
        codes, names = (
            np.asarray(classes.codes, np.int64),
            tuple(as_text(pd.Series(classes.categories))),
        )
        if len(np.unique(codes)) < 2:
            raise DataError(
                f"Target column '{values.name}' of {source.name} holds a single class "
                f"({names[codes[0]]!r}); a classifier needs two or more, so check the target column."
            )
        return torch.from_numpy(codes), names
    fix = f"a {TASK_FOR[kind]} target must be numbers, so fix that value"
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
    mean, std = train.double().mean(0), train.double().std(0, correction=0)
    std = torch.where(std > 0, std, 1.0)
    return DataSpec(
        (width,),
        kind,
        target_names=names,
        target_mean=tuple(mean.tolist()),
        target_std=tuple(std.tolist()),
    )


def build_bundle(
    frame: pd.DataFrame,
    targets: list[str],
    context: SourceContext,
    *,
    source: Source,
    categorical: Collection[str] = (),
    drop: Collection[str] = (),
    sep: str | None = None,
) -> DataBundle:
    """Split one frame, fit the featurizer on its training rows and encode every split."""
    require_columns(frame.columns, targets, source, "target")
    require_columns(frame.columns, drop, source, "drop")
    inputs = frame.drop(columns=[*targets, *drop])
    require_columns(inputs.columns, categorical, source, "categorical")
    if inputs.shape[1] == 0:
        raise DataError(f"{source.name} has no input columns besides the target; add some.")
    categorical = categorical_columns(
        inputs, source, categorical
    )  # checks every row, not train only
    target, names = encode_target(frame[targets], context.target_kind, source)
    stratify = target.numpy() if context.stratify and context.target_kind == "categorical" else None
    index = split_indices(
        len(frame), val=context.val, test=context.test, seed=context.seed, stratify=stratify
    )
    splits = dict(zip(("train", "val", "test"), index, strict=True))
    featurizer = TabularFeaturizer.fit(
        inputs.iloc[splits["train"]],
        categorical=categorical,
        source=source,
        ignore=[*targets, *drop],
        sep=sep,
    )
    x = featurizer.transform(inputs, source)  # (N, F)
    imputed = featurizer.imputed(inputs)
    warn_imputed(imputed, source)
    summary: dict[str, Any] = {
        "source": source.name,
        "sizes": {split: len(rows) for split, rows in splits.items()},
        "num_features": x.shape[1],
        "numeric_columns": [c for c in inputs.columns if c not in categorical],
        "categorical_columns": categorical,
        "imputed": imputed,
    }
    if context.target_kind != "continuous":
        summary["class_counts"] = {
            split: class_counts(target[rows], names) for split, rows in splits.items()
        }
    return DataBundle(
        **{split: TensorSplit(x[rows], target[rows]) for split, rows in splits.items()},
        spec=data_spec(context.target_kind, x.shape[1], names, target[splits["train"]]),
        featurizer=featurizer,
        summary=summary,
    )


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
            f"ones; use a {TASK_FOR[kind]} task with it."
        )
    if kind == "categorical":
        frame["target"] = pd.Categorical.from_codes(
            bunch.target, categories=list(bunch.target_names)
        )
    return build_bundle(frame, ["target"], context, source=Source(f"scikit-learn's {name} data"))


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
    categorical: tuple[str, ...] = (),
    drop: tuple[str, ...] = (),
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
    targets = [target] if isinstance(target, str) else target
    return build_bundle(
        frame, targets, context, source=source, categorical=categorical, drop=drop, sep=sep
    )


@DATASETS.register("parquet")
def parquet_file(
    context: SourceContext,
    /,
    *,
    path: str,
    target: str | list[str],
    categorical: tuple[str, ...] = (),
    drop: tuple[str, ...] = (),
) -> DataBundle:
    """A Parquet file; the settings are those of the ``csv`` source."""
    frame, source = read_table(path, parquet=True)
    targets = [target] if isinstance(target, str) else target
    return build_bundle(frame, targets, context, source=source, categorical=categorical, drop=drop)
