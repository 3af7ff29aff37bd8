"""A tabular featurizer fitted in one streaming pass, equal to the in-memory one.

Numeric columns keep a count, a mean and a sum of squared deviations merged batch by batch
(Chan et al.'s parallel update, stable where the textbook sum of squares is not:
https://en.wikipedia.org/wiki/Algorithms_for_calculating_variance#Parallel_algorithm), the
range, the blanks and a histogram of the top 16 bits of each value, from which the median
(the blank fill) is selected exactly in a few more passes over that column alone.
Categorical columns keep capped counts: beyond the cap the rarest values fall into an
"other" count and are encoded, like values never seen, as all zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from torchlab.data.tables import as_text
from torchlab.data.tabular import Column

HIGH_BITS = 16
COLLECT = 1 << 20  # values of one histogram bin gathered outright to select the median


def sort_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys that sort as the float64 ``values`` do."""
    bits = values.astype(np.float64).view(np.uint64)
    sign = np.uint64(1 << 63)
    return np.where(bits & sign, ~bits, bits | sign)


def from_key(key: int) -> float:
    sign = 1 << 63
    bits = key & ~sign if key & sign else ~key & (2**64 - 1)
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


@dataclass
class NumericStats:
    """Running statistics of one numeric column's values in the training rows."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    low: float = np.inf
    high: float = -np.inf
    blanks: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(1 << HIGH_BITS, np.int64))

    def add(self, values: np.ndarray) -> None:
        """``values``: float64, NaN where blank (checked finite by the caller)."""
        present = values[~np.isnan(values)]
        self.blanks += len(values) - len(present)
        if not len(present):
            return
        self.merge(
            len(present), float(present.mean()), float(((present - present.mean()) ** 2).sum())
        )
        self.low, self.high = min(self.low, present.min()), max(self.high, present.max())
        top = (sort_keys(present) >> np.uint64(64 - HIGH_BITS)).astype(np.int64)
        self.histogram += np.bincount(top, minlength=1 << HIGH_BITS)

    def merge(self, count: int, mean: float, m2: float) -> None:
        """Chan's update: this column's statistics and another group's, combined."""
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta * delta * self.count * count / total
        self.count = total

    def ranks(self) -> list[int]:
        """The 0-based ranks whose values average to the median (NumPy's definition)."""
        middle = self.count // 2
        return [middle] if self.count % 2 else [middle - 1, middle]

    def column(self, name: str, median: float) -> Column:
        """The fitted column: blanks filled with ``median``, then the mean and the
        population std of the filled values (std 1 for a constant column)."""
        filled = NumericStats(self.count, self.mean, self.m2)
        if self.blanks:
            filled.merge(self.blanks, median, 0.0)
        std = float(np.sqrt(filled.m2 / filled.count)) if self.high > self.low else 1.0
        return Column(name, "numeric", median, filled.mean, std)


@dataclass
class CategoryStats:
    """Capped counts of one categorical column's values (as text) in the training rows."""

    limit: int
    counts: dict[str, int] = field(default_factory=dict)
    other: int = 0  # rows whose value was dropped from ``counts`` to keep it small
    blanks: int = 0

    def add(self, values: pd.Series) -> None:
        present = values.dropna()
        self.blanks += len(values) - len(present)
        found = present.value_counts(sort=False)
        for text, count in zip(as_text(found.index.to_series()), found.to_numpy(), strict=True):
            self.counts[text] = self.counts.get(text, 0) + int(count)
        if len(self.counts) > 10 * self.limit:  # bounded memory: keep the most frequent
            self.prune(5 * self.limit)

    def prune(self, keep: int) -> None:
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        self.other += sum(count for _, count in ranked[keep:])
        self.counts = dict(ranked[:keep])

    def column(self, name: str) -> Column:
        """The fitted column: the ``limit`` most frequent values as categories (sorted), the
        most frequent one (ties: first in order) as the blank fill."""
        self.prune(self.limit)
        most = max(self.counts.values())
        fill = min(text for text, count in self.counts.items() if count == most)
        return Column(name, "categorical", fill, categories=tuple(sorted(self.counts)))


def medians(
    columns: dict[str, NumericStats], read: Callable[[list[str]], Iterator[pd.DataFrame]]
) -> dict[str, float]:
    """Each column's exact median, by narrowing its histogram bin in further passes.

    ``read(names)`` yields the training rows' values of those columns, batch by batch.
    Each pass either gathers the values of the bin that holds a wanted rank (when few) or
    counts the next 16 bits within it.
    """
    # (column, rank) -> [prefix, bits of the prefix, rank within the bin, rows in the bin]
    pending: dict[tuple[str, int], list[int]] = {}
    found: dict[tuple[str, int], float] = {}
    for name, stats in columns.items():
        cumulative = np.cumsum(stats.histogram)
        for rank in stats.ranks():
            top = int(np.searchsorted(cumulative, rank, side="right"))
            before = int(cumulative[top - 1]) if top else 0
            pending[name, rank] = [top, HIGH_BITS, rank - before, int(stats.histogram[top])]
    while pending:
        for target, (prefix, bits, _, _) in list(pending.items()):
            if bits == 64:  # every value in the bin is the same
                found[target] = from_key(prefix)
                del pending[target]
        if not pending:
            break
        names = sorted({name for name, _ in pending})
        gathered: dict[tuple[str, int], list[np.ndarray]] = {t: [] for t in pending}
        counts = {t: np.zeros(1 << HIGH_BITS, np.int64) for t in pending}
        for frame in read(names):
            for (name, rank), (prefix, bits, _, rows) in pending.items():
                values = frame[name].to_numpy(np.float64)
                keys = sort_keys(values[~np.isnan(values)])
                keys = keys[(keys >> np.uint64(64 - bits)) == np.uint64(prefix)]
                if rows <= COLLECT:
                    gathered[name, rank].append(keys)
                else:
                    low = (keys >> np.uint64(64 - bits - HIGH_BITS)) & np.uint64(0xFFFF)
                    counts[name, rank] += np.bincount(low.astype(np.int64), minlength=1 << 16)
        for target, (prefix, bits, within, rows) in list(pending.items()):
            if rows <= COLLECT:
                keys = np.concatenate(gathered[target])
                found[target] = from_key(int(np.partition(keys, within)[within]))
                del pending[target]
                continue
            cumulative = np.cumsum(counts[target])
            low = int(np.searchsorted(cumulative, within, side="right"))
            before = int(cumulative[low - 1]) if low else 0
            pending[target] = [(prefix << HIGH_BITS) | low, bits + HIGH_BITS, within - before,
                               int(counts[target][low])]  # fmt: skip
    return {
        name: float(np.mean([found[name, rank] for rank in stats.ranks()]))
        for name, stats in columns.items()
    }
