"""The report's calibration section: how far the test predictions can be trusted.

A classifier gets a reliability diagram (10 bins) with its ECE and Brier score, before and
after its temperature when the run has one (``task.calibrate``); a regressor with intervals
(``task.intervals``) gets their measured coverage on the test split against the nominal one,
and a forecaster with conformal bands gets it per horizon step, beside its quantile heads'.
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
    record = summary.get("calibration") or {}
    if "forecast_intervals" in record:
        return band_coverage_view(experiment, loader, record["forecast_intervals"])
    intervals = record.get("intervals")
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
    first = next(iter(curves.values()))  # binary, or multilabel: a probability per label
    binary = first.scores.ndim == 1 or first.scores.shape == first.target.shape
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


def band_coverage_view(experiment: Any, loader: Any, bands: dict[str, Any]) -> CalibrationView:
    """Test coverage of a forecaster's conformal bands per horizon step against the nominal
    coverage, beside the coverage of its quantile heads as trained when it has them."""
    task, model = experiment.task, experiment.model
    models = {"conformal bands": model}
    if task.quantiles:
        models["quantile heads as trained"] = uncalibrated(model)
    outcomes = task.interval_outcomes(models, loader, experiment.device)
    inside = {name: got[0].double() for name, got in outcomes.items()}
    per_step = {name: shares.mean(dim=(0, 2)).numpy() for name, shares in inside.items()}
    nominal = bands["coverage"]
    rows = [
        {
            "interval": name,
            "nominal coverage": nominal if name == "conformal bands" else "-",
            "test coverage": float(inside[name].mean()),
            "mean width": float(outcomes[name][1].mean()),
        }
        for name in models
    ]
    origins = bands.get("fitted_on", {}).get("origins", "?")
    windows = len(inside["conformal bands"])
    text = (
        f"Conformal bands ({bands.get('method', 'conformal')}) fitted on the forecasts of "
        f"{origins} validation origins, one width per horizon step: each step's interval "
        f"should hold the actual value at least {nominal:.0%} of the time. The test coverage "
        f"is measured on {windows} test window(s); neighbouring steps of one window are not "
        "independent, so it varies around the nominal one by more than its count suggests."
    )
    figure = step_coverage_figure(per_step, nominal)
    return CalibrationView(rows, {"Test coverage per horizon step": figure}, text)


def step_coverage_figure(per_step: dict[str, np.ndarray], nominal: float) -> bytes:
    """The share of test actuals inside each interval, per horizon step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, shares in per_step.items():
        ax.plot(np.arange(1, len(shares) + 1), shares, marker="o", label=name)
    ax.axhline(nominal, linestyle="--", color="0.5", label=f"nominal {nominal:.0%}")
    ax.set_xlabel("horizon step")
    ax.set_ylabel("test coverage")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)
