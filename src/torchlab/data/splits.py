"""Seeded train/val/test splits, stratified for classification; k-fold test parts."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from torchlab.data.base import Fold
from torchlab.errors import DataError


def split_indices(
    n: int,
    *,
    val: float,
    test: float,
    seed: int,
    stratify: np.ndarray | None = None,
    fold: Fold | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, val and test parts of ``n`` samples.

    The test part is cut first, so changing ``val`` never changes the test set: a test
    fraction of 0.2 with seed 0 gives the same test split as scikit-learn's
    ``train_test_split(test_size=0.2, stratify=y, random_state=0)``.

    With a ``fold``, the test part is that fold (``test`` is unused) and the validation
    part, ``val`` of all samples, is cut from the other folds; ``groups`` (one value per
    sample) keeps each group within one fold and within one of train and val.
    """
    if fold is not None:
        return _fold_indices(n, val, seed, stratify, fold, groups)
    if val + test >= 1.0:
        raise DataError(
            f"data.split.val + data.split.test must be below 1 so something is left to train on; "
            f"received val={val}, test={test}."
        )
    index = np.arange(n)
    train, test_idx = _cut(index, test, seed, stratify)
    rest = None if stratify is None else stratify[train]
    train, val_idx = _cut(train, val / (1.0 - test), seed, rest)
    return train, val_idx, test_idx


def _cut(
    index: np.ndarray, fraction: float, seed: int, stratify: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    if fraction <= 0:
        return index, index[:0]
    try:
        keep, cut = train_test_split(
            index, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError as exc:  # e.g. a class with a single member cannot be stratified
        raise DataError(
            f"Cannot split {len(index)} samples with fraction {fraction:.3g} ({exc}); "
            "use more data, a smaller fraction, or data.split.stratify=false."
        ) from None
    return np.sort(keep), np.sort(cut)


def fold_seed(seed: int, repeat: int) -> int:
    """The shuffle seed of one repeat: repeat 0 shuffles by ``seed`` itself."""
    if repeat == 0:
        return seed
    return int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0])


def _fold_indices(
    n: int,
    val: float,
    seed: int,
    stratify: np.ndarray | None,
    fold: Fold,
    groups: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if fold.group is not None and groups is None:
        raise DataError(
            f"data.split.fold.group names the column '{fold.group}', but this data source has "
            "no columns; grouped folds need a table (csv, parquet or a scikit-learn table)."
        )
    shuffle = fold_seed(seed, fold.repeat)
    splitter: KFold | StratifiedKFold | GroupKFold | StratifiedGroupKFold
    if groups is not None and stratify is not None:
        splitter = StratifiedGroupKFold(fold.folds, shuffle=True, random_state=shuffle)
    elif groups is not None:
        splitter = GroupKFold(fold.folds, shuffle=True, random_state=shuffle)
    elif stratify is not None:
        splitter = StratifiedKFold(fold.folds, shuffle=True, random_state=shuffle)
    else:
        splitter = KFold(fold.folds, shuffle=True, random_state=shuffle)
    labels = np.zeros(n) if stratify is None else stratify
    try:
        train, test = list(splitter.split(np.zeros(n), labels, groups))[fold.index]
    except ValueError as exc:  # fewer samples or groups than folds
        raise DataError(
            f"Cannot deal {n} samples into {fold.folds} folds ({exc}); use fewer folds."
        ) from None
    fraction = val * n / len(train)  # val of all samples, as without folds
    if fraction >= 1.0:
        raise DataError(
            f"data.split.val={val} of {n} samples does not fit in the {len(train)} samples "
            f"outside the test fold; lower data.split.val or use more folds."
        )
    if groups is None:
        rest = None if stratify is None else stratify[train]
        train, val_idx = _cut(train, fraction, seed, rest)
        return train, val_idx, np.sort(test)
    if fraction <= 0:
        return np.sort(train), train[:0], np.sort(test)
    cut = GroupShuffleSplit(1, test_size=fraction, random_state=seed)
    keep, held = next(cut.split(train, groups=groups[train]))
    return np.sort(train[keep]), np.sort(train[held]), np.sort(test)


def refuse_folds(fold: Fold | None, source: str, why: str) -> None:
    """Stop a k-fold run of a source whose test part is fixed (``why`` says how)."""
    if fold is not None:
        raise DataError(
            f"Data source '{source}' cannot be cross-validated: {why}. Use `torchlab train "
            "--seeds N` to repeat its runs, or give the data without a fixed test part."
        )
