"""The report's calibration section: how far the test predictions can be trusted.

A classifier gets a reliability diagram (10 bins) with its ECE and Brier score, before and
after its temperature when the run has one (``task.calibrate``); a regressor with intervals
(``task.intervals``) gets their measured coverage on the test split against the nominal one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from torchlab.models.calibrated import Calibrated, uncalibrated
from torchlab.report.analysis import Predictions, _plt, png, predictions
from torchlab.tasks.calibration import (
    BINS,
    Reliability,
    brier_score,
    interval_coverage,
    reliability,
)


@dataclass
class CalibrationView:
    """What the section shows: a table, figures (title -> PNG) and a sentence to read them by."""

    rows: list[dict[str, Any]]
    figures: dict[str, bytes] = field(default_factory=dict)
    text: str = ""


def calibration_view(
    summary: dict[str, Any], experiment: Any, loader: Any
) -> CalibrationView | None:
    """The section of a run, or None when it has nothing to show (no test split, or neither
    class probabilities nor intervals)."""
    if loader is None:
        return None
    intervals = (summary.get("calibration") or {}).get("intervals")
    if intervals is not None:
        scored = predictions(experiment.model, experiment.task, loader, experiment.device)
        return coverage_view(scored, intervals)
    if "test/ece" not in summary.get("test", {}):  # not a classifier of class probabilities
        return None
    return reliability_view(experiment, loader)


def reliability_view(experiment: Any, loader: Any) -> CalibrationView:
    """ECE, Brier score and the reliability diagram of the test probabilities, before and
    after the run's temperature when it has one."""
    model, task, device = experiment.model, experiment.task, experiment.device
    curves: dict[str, Predictions] = {}
    if isinstance(model, Calibrated):
        curves["before (as trained)"] = predictions(uncalibrated(model), task, loader, device)
        label = f"after (temperature {float(model.temperature):.3g})"
    else:
        label = "as trained (task.calibrate: none)"
    curves[label] = predictions(model, task, loader, device)
    diagrams = {name: reliability(p.scores, p.target) for name, p in curves.items()}
    rows = [
        {
            "probabilities": name,
            "ECE": diagrams[name].ece,
            "Brier score": float(
                brier_score(torch.from_numpy(p.scores), torch.from_numpy(p.target)).mean()
            ),
        }
        for name, p in curves.items()
    ]
    binary = next(iter(curves.values())).scores.ndim == 1
    text = (
        "A calibrated model's points lie on the diagonal: of the samples it gives probability "
        f"0.8, 80% are {'positive' if binary else 'right'}. ECE is the gap between the points "
        f"and the diagonal averaged over the test samples ({BINS} equal-width bins); the Brier "
        "score is the squared error of the probabilities. Lower is better for both."
    )
    figure = reliability_figure(diagrams, binary)
    return CalibrationView(rows, {f"Reliability diagram (test, {BINS} bins)": figure}, text)


def reliability_figure(diagrams: dict[str, Reliability], binary: bool) -> bytes:
    """Observed accuracy (or positive share) against mean confidence per bin, one line per
    set of probabilities, over the samples per bin."""
    plt = _plt()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="0.6", label="perfectly calibrated")
    width = 1 / BINS / (len(diagrams) + 1)
    centres = (np.arange(BINS) + 0.5) / BINS
    for i, (name, diagram) in enumerate(diagrams.items()):
        filled = diagram.count > 0
        top.plot(
            diagram.confidence[filled],
            diagram.accuracy[filled],
            marker="o",
            label=f"{name}: ECE {diagram.ece:.3f}",
        )
        offset = (i - (len(diagrams) - 1) / 2) * width
        bottom.bar(centres + offset, diagram.count, width=width, label=name)
    top.set_ylabel("share positive" if binary else "accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.04)  # points at 0 and 1 stay whole
    top.legend(fontsize="small", loc="upper left")
    top.grid(alpha=0.3)
    bottom.set_xlabel("probability of the positive class" if binary else "confidence (top label)")
    bottom.set_ylabel("samples")
    bottom.grid(alpha=0.3)
    return png(fig)


def coverage_view(scored: Predictions, intervals: dict[str, Any]) -> CalibrationView:
    """Nominal against measured coverage of the conformal intervals on the test split."""
    half_widths = intervals["half_widths"]
    covered = interval_coverage(scored.scores, scored.target, np.array(list(half_widths.values())))
    nominal = intervals["coverage"]
    rows = [
        {
            "target": name,
            "nominal coverage": nominal,
            "test coverage": float(share),
            "interval": f"prediction ± {width:.4g}",
        }
        for (name, width), share in zip(half_widths.items(), covered, strict=True)
    ]
    samples = intervals.get("fitted_on", {}).get("samples", "?")
    text = (
        f"Split-conformal intervals fitted on {samples} validation residuals: each should "
        f"hold the true value for at least {nominal:.0%} of new samples. The test coverage is "
        f"measured on {len(scored.target)} test samples, so it varies around the nominal one "
        "by chance."
    )
    return CalibrationView(rows, {}, text)
