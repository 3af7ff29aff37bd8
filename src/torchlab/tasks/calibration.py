"""How far predictions can be trusted: calibration of classifiers' probabilities and
coverage of regression intervals, as plain functions of scores and targets.

Binning follows torchmetrics' ``CalibrationError`` (10 equal-width bins, a confidence on a
boundary goes to the bin above it), so a reliability diagram and ``test/ece`` agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

BINS = 10


@dataclass(frozen=True)
class Reliability:
    """Per-bin mean confidence, observed accuracy and sample count of a reliability diagram."""

    confidence: np.ndarray  # (bins,) mean confidence in each bin (NaN where empty)
    accuracy: np.ndarray  # (bins,) share correct in each bin (NaN where empty)
    count: np.ndarray  # (bins,) samples per bin

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean gap |accuracy - confidence|."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((gaps * self.count[filled]).sum() / max(1, self.count.sum()))


def confidences(probs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a reliability diagram bins: ``(confidence, outcome)`` per sample.

    Multi-class probabilities ``(N, C)`` give the top label's probability and whether the
    top label is right; a binary task's ``(N,)`` positive-class probabilities give that
    probability and whether the sample is positive (as torchmetrics' binary metric does);
    multilabel probabilities ``(N, C)`` with targets ``(N, C)`` are ``N * C`` binary ones.
    """
    target = np.asarray(target).astype(int)
    if probs.ndim == 2 and target.shape == probs.shape:  # multilabel
        probs, target = probs.reshape(-1), target.reshape(-1)
    if probs.ndim == 1:
        return probs.astype(float), (target == 1).astype(float)
    return probs.max(axis=1).astype(float), (probs.argmax(axis=1) == target).astype(float)


def reliability(probs: np.ndarray, target: np.ndarray, bins: int = BINS) -> Reliability:
    """The reliability diagram of classifier probabilities (see :func:`confidences`)."""
    confidence, outcome = confidences(np.asarray(probs), target)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
        accuracy = np.bincount(index, outcome, minlength=bins) / count
    return Reliability(mean_confidence, accuracy, count)


def brier_score(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample Brier score: ``sum_k (p_k - y_k)^2`` over classes ``(N, C)`` (0 to 2), or
    ``(p - y)^2`` for a binary task's positive-class probabilities ``(N,)`` (0 to 1), or
    ``sum_k (p_k - y_k)^2`` over the labels of multilabel targets ``(N, C)`` (0 to C)."""
    if probs.ndim == 1:
        return (probs.float() - target.float()) ** 2
    if target.shape == probs.shape:  # multilabel
        return ((probs.float() - target.float()) ** 2).sum(-1)
    onehot = torch.nn.functional.one_hot(target.long(), probs.shape[-1]).float()
    return ((probs.float() - onehot) ** 2).sum(-1)


class BrierScore(Metric):
    """Mean Brier score over the samples seen (see :func:`brier_score`); lower is better."""

    higher_is_better = False
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        self.total += brier_score(probs, target).sum().double()
        self.count += len(target)

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


def calibration_nll(
    logits: torch.Tensor, target: torch.Tensor, binary: bool, temperature: Any
) -> float | torch.Tensor:
    """Mean negative log-likelihood of ``target`` under ``logits / temperature``: a float for
    a float temperature, a differentiable tensor for a tensor one."""
    scaled = logits.double() / temperature
    if binary:  # (N,) logits of the positive class
        loss = nn.functional.binary_cross_entropy_with_logits(scaled, target.double())
    else:  # (N, C) class logits
        loss = nn.functional.cross_entropy(scaled, target.long())
    return loss if isinstance(temperature, torch.Tensor) else float(loss)


def fit_temperature(
    logits: torch.Tensor,
    target: torch.Tensor,
    binary: bool,
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """The temperature ``T > 0`` that minimises the NLL of ``logits / T``, found by L-BFGS
    over ``log T`` (Guo et al. 2017, "On Calibration of Modern Neural Networks",
    https://arxiv.org/abs/1706.04599), clipped to ``bounds``: logits that classify every
    sample right pull it towards 0 without end."""
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    logits = logits.detach()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = calibration_nll(logits, target, binary, log_t.exp())
        loss.backward()  # type: ignore[union-attr]
        return loss  # type: ignore[return-value]

    with torch.enable_grad():
        optimizer.step(closure)
    return min(max(float(log_t.detach().exp()), bounds[0]), bounds[1])


def conformal_half_widths(residuals: np.ndarray, coverage: float) -> np.ndarray:
    """Half-widths of split-conformal intervals, one per target.

    With ``n`` absolute validation residuals per target, the interval ``prediction +- q``
    covers a new sample with probability at least ``coverage`` when ``q`` is the
    ``ceil((n + 1) * coverage)``-th smallest residual (Lei et al. 2018, "Distribution-Free
    Predictive Inference for Regression", https://arxiv.org/abs/1604.04173). Too few
    residuals for that rank give ``inf``: no finite interval is guaranteed.

    Args:
        residuals: ``(n, T)`` or ``(n,)`` absolute residuals ``|y - prediction|``.
        coverage: The nominal coverage ``1 - alpha``, in (0, 1).
    """
    return conformal_quantiles(np.abs(np.asarray(residuals, dtype=float)), coverage)


def conformal_quantiles(scores: np.ndarray, coverage: float) -> np.ndarray:
    """Per column of ``scores`` ``(n, K)``, the ``ceil((n + 1) * coverage)``-th smallest: the
    split-conformal threshold of any nonconformity score (signed ones too, such as how far
    an actual falls outside a quantile interval); ``inf`` when ``n`` is too small."""
    scores = np.asarray(scores, dtype=float).reshape(len(scores), -1)
    n = len(scores)
    rank = math.ceil((n + 1) * coverage - 1e-9)  # 10 * 0.7 is 7.000000000000001
    if rank > n:
        return np.full(scores.shape[1], np.inf)
    return np.sort(scores, axis=0)[rank - 1]


def fewest_samples(coverage: float) -> int:
    """The fewest validation samples that give finite intervals at ``coverage``."""
    return math.ceil(coverage / (1 - coverage) - 1e-9)


def interval_coverage(
    values: np.ndarray, target: np.ndarray, half_widths: np.ndarray
) -> np.ndarray:
    """Share of samples whose target lies in ``value +- half_width``, per target ``(T,)``."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    target = np.asarray(target, dtype=float).reshape(len(target), -1)
    return (np.abs(target - values) <= np.asarray(half_widths)).mean(axis=0)
