"""Seeded train/val/test splits, stratified for classification."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from torchlab.errors import DataError


def split_indices(
    n: int, *, val: float, test: float, seed: int, stratify: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, val and test parts of ``n`` samples.

    The test part is cut first, so changing ``val`` never changes the test set: a test
    fraction of 0.2 with seed 0 gives the same test split as scikit-learn's
    ``train_test_split(test_size=0.2, stratify=y, random_state=0)``.
    """
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
