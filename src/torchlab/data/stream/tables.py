"""A Parquet dataset larger than memory, streamed in record batches for training.

One pass over the dataset (a bar shows its rows per second) assigns every row to a split
by a seeded hash (:func:`~torchlab.data.stream.parquet.split_codes`), counts the rows of
each split per row group, and fits the same :class:`~torchlab.data.tabular.TabularFeaturizer`
the in-memory sources fit, so predict, export and serve read streamed runs unchanged.
Training then reads the row groups in the order of :mod:`~torchlab.data.stream.layout`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.types as pat
import torch

from torchlab.data.base import Batch, DataBundle, DataSpec, SourceContext
from torchlab.data.loaders import default_workers
from torchlab.data.splits import refuse_folds
from torchlab.data.stream.csv_parquet import CACHE, dataset_files
from torchlab.data.stream.layout import Segment
from torchlab.data.stream.parquet import SPLITS, ParquetScan, split_codes
from torchlab.data.stream.split import Shared, StreamedSplit, StreamPosition
from torchlab.data.stream.stats import CategoryStats, NumericStats, medians
from torchlab.data.tables import Source, as_text, require_columns, shown
from torchlab.data.tabular import TabularFeaturizer, warn_imputed
from torchlab.errors import DataError
from torchlab.progress import row_progress


@dataclass(frozen=True)
class Rows:
    """How rows of the dataset are read: which columns, and which split each row is in."""

    scan: ParquetScan
    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    key: str | None
    seed: int
    val: float
    test: float

    @property
    def columns(self) -> list[str]:
        key = [self.key] if self.key and self.key not in (*self.inputs, *self.targets) else []
        return [*self.inputs, *self.targets, *key]

    def codes(self, batch: pa.Table | pa.RecordBatch, offset: int) -> np.ndarray:
        return split_codes(
            batch, offset, key=self.key, seed=self.seed, val=self.val, test=self.test
        )

    def passes(self, columns: list[str], what: str) -> Iterator[Chunk]:
        """Every row of the dataset in storage order, in record batches, with its split."""
        read = sorted({*columns, *([self.key] if self.key else [])})
        with row_progress(what, self.scan.rows) as progress:
            for index, piece in enumerate(self.scan.pieces):
                offset = piece.offset
                for batch in self.scan.batches(piece, read):
                    where = self.scan.files[piece.file].name
                    first = piece.first + offset - piece.offset
                    yield Chunk(index, where, first, batch.to_pandas(), self.codes(batch, offset))
                    offset += batch.num_rows
                    progress.advance(batch.num_rows)


@dataclass(frozen=True)
class Chunk:
    """A record batch of piece ``index`` as a frame; ``first`` is its first row's number in
    the file ``where``, ``codes`` the split of each row."""

    index: int
    where: str
    first: int
    frame: pd.DataFrame
    codes: np.ndarray

    def numbers(self, name: str, target: bool = False) -> np.ndarray:
        """A column as float64, NaN where blank; raises at a value that is not a finite
        number (or, in a ``target``, at a blank)."""
        values = self.frame[name]
        try:
            numbers = values.to_numpy(np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            raise DataError(
                f"Target column '{name}' of {self.where} holds text; a regression target must "
                "be numbers, so fix that column."
            ) from None
        blank = values.isna().to_numpy()
        bad = ~np.isfinite(numbers) & (~blank | target)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            if blank[row]:
                self.blank_target(name, row)
            raise DataError(
                f"Column '{name}' of {self.where} holds {shown(values.iloc[row])}, not a finite "
                f"number, at row {self.first + row}; fix or blank out that value (blanks are "
                "imputed)."
            )
        return numbers

    def labels(self, name: str) -> pd.Series:
        """A class column; raises at a blank."""
        values = self.frame[name]
        if (blank := values.isna().to_numpy()).any():
            self.blank_target(name, int(np.argmax(blank)))
        return values

    def blank_target(self, name: str, row: int) -> None:
        raise DataError(
            f"Target column '{name}' of {self.where} is blank at row {self.first + row}; "
            "fill in the target or delete the row."
        )


class StreamedTable(StreamedSplit):
    """The rows of one split of a Parquet dataset as batches ``(inputs (B, F), target)``."""

    def __init__(
        self,
        rows: Rows,
        split: int,
        sizes: tuple[int, ...],
        featurizer: TabularFeaturizer,
        classes: tuple[str, ...] | None,
        shared: Shared,
        buffer: int,
    ) -> None:
        super().__init__(sizes, shared, buffer)
        self.rows, self.split = rows, split
        self.featurizer, self.classes = featurizer, classes

    def read_window(self, window: list[Segment]) -> Batch:
        """The window's rows of this split, as model inputs and targets."""
        frames = []
        for segment in window:
            piece = self.rows.scan.pieces[segment.piece]
            table = self.rows.scan.read(piece, self.rows.columns)
            mine = np.flatnonzero(self.rows.codes(table, piece.offset) == self.split)
            frames.append(table.take(mine[segment.start : segment.stop]).to_pandas())
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        where = Source(self.rows.scan.name(self.rows.scan.pieces[window[0].piece]))
        inputs = self.featurizer.transform(frame, where, warn=False)
        return Batch(inputs, encode(frame[list(self.rows.targets)], self.classes))

    def auto_workers(self) -> int:
        """No workers below 4 cores. A window is featurized in a few vectorized calls, so a
        worker saves the training process little and adds the hand-off of every batch: on 2
        cores one epoch of a 1M-row table took 19.8 s in this process, 25.2 s with one
        worker and 26.9 s with two (benchmarks/RESULTS.md)."""
        return default_workers() if (os.cpu_count() or 1) >= 4 else 0

    def select(self, rows: Batch, index: Any) -> Batch:
        return Batch(rows.inputs[index], rows.target[index])

    def join(self, parts: list[Batch]) -> Batch:
        if len(parts) == 1:
            return parts[0]
        return Batch(torch.cat([p.inputs for p in parts]), torch.cat([p.target for p in parts]))


def encode(frame: pd.DataFrame, classes: tuple[str, ...] | None) -> torch.Tensor:
    """Class indices (``classes`` given) or float32 values ``(N, T)``."""
    if classes is None:
        return torch.from_numpy(frame.to_numpy(np.float32))
    codes = pd.Index(classes).get_indexer(as_text(frame.iloc[:, 0]))
    return torch.from_numpy(codes.astype(np.int64))


@dataclass
class Pass:
    """What the statistics pass learns."""

    numeric: dict[str, NumericStats]
    categories: dict[str, CategoryStats]
    blanks: dict[str, int]  # every split's blanks, per input column, for the summary
    sizes: np.ndarray  # (pieces, 3): rows of each split in each piece
    classes: dict[Any, np.ndarray] = field(default_factory=dict)  # label -> rows per split
    targets: list[NumericStats] = field(default_factory=list)  # continuous, training rows


def streamed_bundle(
    context: SourceContext,
    *,
    path: str,
    target: str | list[str],
    categorical: list[str] | None,
    drop: list[str] | None,
    key: str | None,
    buffer: int,
    max_categories: int,
) -> DataBundle:
    """The bundle of a streamed Parquet dataset (see the ``parquet`` source)."""
    refuse_folds(context.fold, "parquet", "streamed rows are split by a hash, not into folds")
    if context.target_kind not in ("categorical", "continuous"):
        raise DataError(
            f"Streamed tables train classification and regression, not {context.target_kind} "
            "targets; set data.source.streaming=false to read the table into memory."
        )
    if context.val + context.test >= 1.0:
        raise DataError(
            "data.split.val + data.split.test must be below 1 so something is left to train on; "
            f"received val={context.val}, test={context.test}."
        )
    scan = ParquetScan.of(dataset_files(path))
    what = "CSV files" if CACHE in scan.files[0].parts else "Parquet dataset"
    names, source = scan.schema.names, Source(f"the {what} '{path}'")
    targets, drop = [target] if isinstance(target, str) else list(target), list(drop or ())
    for setting, wanted in (("target", targets), ("drop", drop), ("categorical", categorical or ()),
                            ("key", [key] if key else [])):  # fmt: skip
        require_columns(names, wanted, source, setting)
    if context.target_kind == "categorical" and len(targets) != 1:
        raise DataError(f"A classification target is one column, not {targets}; name one.")
    inputs = [n for n in names if n not in (*targets, *drop)]
    if not inputs:
        raise DataError(f"{source.name} has no input columns besides the target; add some.")
    kinds = {n: column_kind(scan.schema.field(n), categorical or (), source) for n in inputs}
    rows = Rows(scan, tuple(inputs), tuple(targets), key, context.seed, context.val, context.test)
    found = statistics_pass(rows, kinds, context, max_categories)
    featurizer = fitted(rows, found, source, ignore=(*targets, *drop))
    classes, spec = target_spec(found, context, tuple(targets), len(featurizer.feature_names))
    shared = Shared()
    splits = {
        name: StreamedTable(
            rows, code, tuple(found.sizes[:, code].tolist()), featurizer, classes, shared, buffer
        )
        for code, name in enumerate(SPLITS)
    }
    return DataBundle(
        **splits,
        spec=spec,
        featurizer=featurizer,
        summary=summary(found, featurizer, source, classes, scan),
        callbacks=[StreamPosition(shared, len(scan.pieces), scan.rows)],
        baseline_note="No baseline: classical baselines fit in-memory arrays, and this table "
        "is streamed; train an in-memory run on a sample of it to compare.",
    )


def column_kind(field: pa.Field, forced: Any, source: Source) -> str:
    """``numeric`` or ``categorical``, from the column's Parquet type."""
    kind = field.type.value_type if pat.is_dictionary(field.type) else field.type
    text = pat.is_string(kind) or pat.is_large_string(kind) or pat.is_boolean(kind)
    if field.name in forced or text:
        return "categorical"
    if pat.is_integer(kind) or pat.is_floating(kind) or pat.is_decimal(kind):
        return "numeric"
    raise DataError(
        f"Column '{field.name}' of {source.name} holds {kind} values, which tabular sources "
        "cannot use; convert it to numbers or text, or list it in data.source.drop."
    )


def statistics_pass(
    rows: Rows, kinds: dict[str, str], context: SourceContext, max_categories: int
) -> Pass:
    """One pass over every row: split sizes, class counts and the training statistics."""
    found = Pass(
        {n: NumericStats() for n, k in kinds.items() if k == "numeric"},
        {n: CategoryStats(max_categories) for n, k in kinds.items() if k == "categorical"},
        dict.fromkeys(kinds, 0),
        np.zeros((len(rows.scan.pieces), 3), np.int64),
        targets=[NumericStats() for _ in rows.targets]
        if context.target_kind == "continuous"
        else [],
    )
    for chunk in rows.passes(rows.columns, "statistics"):
        frame, codes, train = chunk.frame, chunk.codes, chunk.codes == 0
        found.sizes[chunk.index] += np.bincount(codes, minlength=3)
        for name in kinds:
            found.blanks[name] += int(frame[name].isna().sum())
        for name, stats in found.numeric.items():
            stats.add(chunk.numbers(name)[train])
        for name, stats in found.categories.items():
            stats.add(frame.loc[train, name])
        for name, stats in zip(rows.targets, found.targets, strict=False):
            stats.add(chunk.numbers(name, target=True)[train])
        if not found.targets:
            labels = chunk.labels(rows.targets[0])
            for code in range(3):
                for label, count in labels[codes == code].value_counts(sort=False).items():
                    found.classes.setdefault(label, np.zeros(3, np.int64))[code] += count
    return found


def fitted(rows: Rows, found: Pass, source: Source, ignore: tuple[str, ...]) -> TabularFeaturizer:
    """The featurizer from the pass's statistics; the medians take a few more passes."""
    for name, stats in [*found.numeric.items(), *found.categories.items()]:
        if stats.count if isinstance(stats, NumericStats) else stats.counts:
            continue
        raise DataError(
            f"Column '{name}' of {source.name} has no values in the training split; "
            "fill it in or list it in data.source.drop."
        )

    def train_values(names: list[str]) -> Iterator[pd.DataFrame]:
        for chunk in rows.passes(names, f"medians of {len(names)} column(s)"):
            yield chunk.frame.loc[chunk.codes == 0, names]

    middle = medians(found.numeric, train_values)
    columns = tuple(
        found.numeric[n].column(n, middle[n])
        if n in found.numeric
        else found.categories[n].column(n)
        for n in rows.inputs
    )
    return TabularFeaturizer(columns, ignore)


def target_spec(
    found: Pass, context: SourceContext, targets: tuple[str, ...], width: int
) -> tuple[tuple[str, ...] | None, DataSpec]:
    """The class names (None for continuous targets) and the data's spec."""
    if found.targets:
        means = tuple(s.mean for s in found.targets)
        stds = tuple(float(np.sqrt(s.m2 / s.count)) or 1.0 for s in found.targets)
        spec = DataSpec((width,), "continuous", target_names=targets, target_mean=means,
                        target_std=stds)  # fmt: skip
        return None, spec
    order = pd.Categorical(pd.Series(list(found.classes))).categories  # as in-memory tables sort
    names = tuple(as_text(pd.Series(order)))
    if len(names) < 2:
        raise DataError(
            f"Target column '{targets[0]}' holds a single class ({names[0]!r}); a classifier "
            "needs two or more, so check that column."
        )
    found.classes = {name: found.classes[label] for name, label in zip(names, order, strict=True)}
    return names, DataSpec((width,), "categorical", class_names=names)


def summary(
    found: Pass,
    featurizer: TabularFeaturizer,
    source: Source,
    classes: tuple[str, ...] | None,
    scan: ParquetScan,
) -> dict[str, Any]:
    """Facts for the run's report, as in-memory tables give them, and the stream's shape."""
    imputed = {
        c.name: {"count": found.blanks[c.name], "fill": c.fill}
        for c in featurizer.columns
        if found.blanks[c.name]
    }
    warn_imputed(imputed, source)
    facts: dict[str, Any] = {
        "source": source.name,
        "streamed": {"files": len(scan.files), "row_groups": len(scan.pieces), "rows": scan.rows},
        "sizes": {name: int(found.sizes[:, code].sum()) for code, name in enumerate(SPLITS)},
        "num_features": len(featurizer.feature_names),
        "numeric_columns": [c.name for c in featurizer.columns if c.kind == "numeric"],
        "categorical_columns": [c.name for c in featurizer.columns if c.kind == "categorical"],
        "imputed": imputed,
    }
    if other := {n: s.other for n, s in found.categories.items() if s.other}:
        facts["other_categories"] = other  # rows of values beyond data.source.max_categories
    if classes is not None:
        facts["class_counts"] = {
            name: {label: int(found.classes[label][code]) for label in classes}
            for code, name in enumerate(SPLITS)
        }
    return facts
