"""Statistics over repeated runs: mean, spread and interval of a metric, and whether the
deep model beats its baseline once the runs' dependence is accounted for.

Folds of one data set share most of their training samples, so their scores are not
independent and a plain paired t-test over folds is far too confident. The corrected
resampled t-test of Nadeau & Bengio (2003, "Inference for the Generalization Error",
Machine Learning 52:239-281) inflates the variance of the mean difference from 1/J to
1/J + n_test/n_train; Bouckaert & Frank (2004) apply it to all J = k x r folds of
repeated k-fold cross-validation, as here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

BETTER, WORSE, UNDECIDED = "deep learning better", "deep learning worse", "undecided at 95%"


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation and the t interval of the mean of some values."""

    values: tuple[float, ...]
    mean: float
    std: float  # with J - 1 degrees of freedom; NaN for a single value
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "values": list(self.values)}


def spread(values: Sequence[float], confidence: float = 0.95) -> Spread:
    """Mean ± t-quantile x std / sqrt(J): the interval of the mean of independent values."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return Spread(tuple(x.tolist()), mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = _quantile(confidence, len(x) - 1) * std / math.sqrt(len(x))
    return Spread(tuple(x.tolist()), mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class PairedTest:
    """The corrected resampled t-test of paired differences (deep model - baseline).

    Attributes:
        differences: One per fold or seed, in run order.
        mean, std: Of the differences.
        correction: The variance factor: 1/J + n_test/n_train (1/J alone for runs that
            share one test set, e.g. seeds of one split).
        t, dof, p_value: The statistic, its degrees of freedom (J - 1) and two-sided p.
        low, high: The corrected interval of the mean difference.
    """

    differences: tuple[float, ...]
    mean: float
    std: float
    correction: float
    t: float
    dof: int
    p_value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "differences": list(self.differences)}


def corrected_t_test(
    differences: Sequence[float], test_train_ratio: float, confidence: float = 0.95
) -> PairedTest:
    """Nadeau & Bengio's t = mean(d) / sqrt((1/J + n_test/n_train) * var(d)), J - 1 dof.

    ``test_train_ratio`` 0 gives the ordinary paired t-test.
    """
    d = np.asarray(differences, dtype=np.float64)
    j, mean = len(d), float(d.mean())
    if j < 2:
        raise ValueError(f"a paired t-test needs two or more differences; received {j}")
    std = float(d.std(ddof=1))
    correction = 1.0 / j + test_train_ratio
    error = math.sqrt(correction) * std
    t = mean / error if error > 0 else _certain(mean)
    p = float(2 * stats.t.sf(abs(t), j - 1))
    half = _quantile(confidence, j - 1) * error
    return PairedTest(
        tuple(d.tolist()), mean, std, correction, t, j - 1, p, mean - half, mean + half
    )


def verdict(test: PairedTest, higher_is_better: bool, alpha: float = 0.05) -> str:
    """Whether the deep model is better, worse, or not told apart from its baseline."""
    if not test.p_value < alpha:
        return UNDECIDED
    gains = test.mean > 0 if higher_is_better else test.mean < 0
    return BETTER if gains else WORSE


def _certain(mean: float) -> float:
    """The statistic of differences that are all equal: no doubt, unless they are all 0."""
    return 0.0 if mean == 0 else math.copysign(math.inf, mean)


def _quantile(confidence: float, dof: int) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, dof))
