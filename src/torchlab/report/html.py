"""``report.html`` (one self-contained page, images embedded) and ``MODEL_CARD.md`` of a run.

:func:`write_reports` is called at the end of fit once ``summary.json`` exists, and again by
``torchlab report RUN_DIR`` (the ``supervised`` kind re-runs the test split; an RL run's report
comes from its files, see :mod:`torchlab.rl.report`).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from torchlab.files import write_text
from torchlab.notices import notice
from torchlab.report.analysis import (
    Analysis,
    analyse,
    class_balance,
    image_grid,
    length_histogram,
    predictions,
    token_lengths,
)

DESCRIPTIONS = {"cnn": "A convolutional network", "mlp": "A multilayer perceptron"}


@cache
def environment_for_templates() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("torchlab", "report/templates"),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def write_run_reports(run: Any, experiment: Any, data: dict[str, Any]) -> None:
    """What training calls: a report that cannot be written warns, never fails a trained run."""
    warn_on_failure(run.dir, lambda: write_reports(run, experiment, data))


def warn_on_failure(run_dir: Path, write: Callable[[], Any]) -> None:
    """Call ``write``; if the report cannot be written, warn: the run itself is complete."""
    try:
        write()
    except Exception as exc:
        notice(
            f"The report of '{run_dir}' could not be written ({type(exc).__name__}: {exc}); "
            f"the run itself is complete. Rebuild it with 'torchlab report {run_dir}'.",
        )


def write_reports(run: Any, experiment: Any, data: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.html`` and ``MODEL_CARD.md`` into the run directory; returns both paths.

    Args:
        run: The :class:`~torchlab.run.Run` (its ``summary.json`` already written).
        experiment: The built model, task, data bundle and device (best weights loaded).
        data: The run's loaders by split name.
    """
    analysis = Analysis()
    if "test" in data:
        try:
            analysis = test_analysis(experiment, data["test"])
        except ValueError as exc:  # e.g. NaN predictions: report the rest, say why this is missing
            note = f"The test predictions could not be analysed: {exc}"
            notice(note)
            analysis = Analysis(note=note)
    context = _context(run, experiment.bundle, analysis)
    context["calibration"] = test_calibration(run, experiment, data.get("test"))
    templates = environment_for_templates()
    html = run.dir / "report.html"
    write_text(html, templates.get_template("report.html.j2").render(**context))
    card = run.dir / "MODEL_CARD.md"
    write_text(card, templates.get_template("MODEL_CARD.md.j2").render(**context))
    return html, card


def test_analysis(experiment: Any, loader: Any) -> Analysis:
    """The task's own analysis when its deployment record names one (segmentation overlays,
    forecast plots, ...), else the one that fits the target kind."""
    own = experiment.task.deployment.resolve("analysis")
    if own is not None:
        return own(experiment, loader)
    model, task, device = experiment.model, experiment.task, experiment.device
    pred = predictions(model, task, loader, device)
    analysis = analyse(pred, experiment.bundle.spec)
    analysis.errors, analysis.explanations = errors_and_explanations(experiment, pred)
    return analysis


def errors_and_explanations(experiment: Any, pred: Any) -> tuple[Any, Any]:
    """The error analysis and the explained test examples; either one that fails is a note
    in the report, never a missing report."""
    from torchlab.report.error_analysis import ErrorAnalysis, analyse_errors, test_examples
    from torchlab.report.explanations import Explanations, report_explanations

    bundle = experiment.bundle
    report = getattr(experiment.config, "report", None)
    try:
        errors = analyse_errors(
            pred,
            bundle.spec,
            bundle.featurizer,
            test_examples(bundle),
            report.slices if report else [],
        )
    except Exception as exc:
        errors = ErrorAnalysis(notes=[f"The error analysis failed ({type(exc).__name__}: {exc})."])
        notice(errors.notes[0])
    try:
        explanations = report_explanations(experiment, list(bundle.spec.class_names))
    except Exception as exc:
        explanations = Explanations(note=f"No explanations ({type(exc).__name__}: {exc}).")
        notice(f"The report has {explanations.note[0].lower()}{explanations.note[1:]}")
    return errors, explanations


def test_calibration(run: Any, experiment: Any, loader: Any) -> dict[str, Any] | None:
    """The calibration section's table, figures and text (see :mod:`torchlab.report.calibration`)."""
    from torchlab.report.calibration import calibration_view

    try:
        view = calibration_view(run.summary, experiment, loader)
    except ValueError as exc:  # e.g. NaN probabilities: report the rest
        return {"rows": [], "figures": [], "text": f"Calibration could not be measured: {exc}"}
    if view is None:
        return None
    figures = [(title, data_uri(image)) for title, image in view.figures.items()]
    return {"rows": view.rows, "figures": figures, "text": view.text}


def _context(run: Any, bundle: Any, analysis: Analysis) -> dict[str, Any]:
    from torchlab import __version__

    summary = run.summary
    spec = bundle.spec
    config = run.config
    results, baseline, verdict = results_table(summary)
    curves = [
        (title, data_uri(path.read_bytes()))
        for title, path in (
            (
                "Loss, validation metrics and learning rate per epoch",
                run.dir / "learning_curves.png",
            ),
            ("Learning-rate range test (optim.lr: auto)", run.dir / "lr_finder.png"),
        )
        if path.is_file()
    ]
    data_figures = []
    classes = list(spec.class_names)
    balance = class_balance(bundle.summary, classes)
    if balance is not None:
        data_figures.append(("Class balance per split", data_uri(balance)))
    inputs = getattr(bundle.train, "inputs", None)
    if inputs is not None and inputs.ndim == 4 and len(inputs):
        data_figures.append(
            ("Training samples", data_uri(image_grid(inputs, bundle.train.target, classes)))
        )
    data_figures += more_data_figures(bundle)
    facts = {
        k: v
        for k, v in bundle.summary.items()
        if k not in ("sizes", "class_counts", "skipped_files")
    }
    # Files skipped while training read them are known only to summary.json, which then
    # holds the split sizes counted without them too.
    sizes = summary.get("sizes") or bundle.summary.get("sizes", {})
    skipped = summary.get("skipped_files") or bundle.summary.get("skipped_files", [])
    info = json.loads((run.dir / "run.json").read_text())
    env_path = run.dir / "environment.json"
    rows = analysis.tables.get("per-class metrics", [])
    worst = min(rows, key=lambda r: r["f1"]) if rows else None
    total = sum(sizes.values()) or "?"
    return {
        "name": config.name,
        "run_dir": str(run.dir),
        "status": "completed",
        "created": info.get("created", ""),
        "summary": summary,
        "results": results,
        "baseline": baseline,
        "verdict": verdict,
        "curves": curves,
        "analysis": analysis,
        "analysis_figures": [(t, data_uri(b)) for t, b in analysis.figures.items()],
        "error_gallery": data_uri(analysis.errors.gallery)
        if analysis.errors is not None and analysis.errors.gallery
        else "",
        "explanation_figures": [
            (t, data_uri(b)) for t, b in getattr(analysis.explanations, "figures", {}).items()
        ],
        "data": bundle.summary,
        "sizes": sizes,
        "skipped": skipped,
        "data_figures": data_figures,
        "data_facts": json.dumps(facts, indent=2) if facts else "",
        "spec": spec,
        "config": config,
        "config_yaml": config.to_yaml(),
        "environment": json.loads(env_path.read_text()) if env_path.is_file() else {},
        "version": __version__,
        "model_desc": DESCRIPTIONS.get(config.model.name, f"A `{config.model.name}` model"),
        "task_desc": config.task.name,
        "target_desc": _target_desc(spec),
        "input_desc": f"inputs of shape {tuple(spec.input_shape)}",
        "total": total,
        "worst": f"{worst['class']} (F1 {worst['f1']:.3f})" if worst else "",
    }


def more_data_figures(bundle: Any) -> list[tuple[str, str]]:
    """Samples of file-backed image data, token lengths of text data and the split series of
    time-series data, when they apply."""
    from torchlab.report.forecasting import series_overview

    figures = []
    images = stored_images(bundle.train)
    if images is not None:
        grid = image_grid(*images, list(bundle.spec.class_names))
        figures.append(("Training samples", data_uri(grid)))
    lengths = token_lengths(bundle)
    if lengths:
        limit = getattr(bundle.featurizer, "max_length", None)
        figures.append(("Tokens per text and split", data_uri(length_histogram(lengths, limit))))
    series = series_overview(bundle)
    if series is not None:
        figures.append(("The series with its train, validation and test parts", data_uri(series)))
    return figures


def stored_images(split: Any, count: int = 24) -> tuple[list[Any], Any] | None:
    """The first images and labels of a split read from files (``ImageDataset``), untransformed.

    Tensor splits have their grid from ``inputs``; unreadable files are left out.
    """
    import torch

    from torchlab.errors import DataError

    if not (hasattr(split, "read") and hasattr(split, "labels")) or not len(split):
        return None
    images, labels = [], []
    for i in range(min(count, len(split))):
        try:
            images.append(split.read(i))
        except DataError:  # a bad file is reported by training, not here
            continue
        labels.append(int(split.labels[i]))
    return (images, torch.tensor(labels)) if images else None


def _target_desc(spec: Any) -> str:
    if spec.target_kind == "continuous":
        return ", ".join(spec.target_names) or "a continuous target"
    return f"one of {len(spec.class_names)} classes" if spec.class_names else "the target"


def results_table(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], dict | None, str]:
    """Rows of scalar test metrics beside the baseline's, and a one-line verdict."""
    from torchlab.tasks import higher_is_better

    baseline = summary.get("baseline") or None
    rows = []
    for key, value in summary["test"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        other = baseline.get(key) if baseline else None
        higher = key.rpartition("/")[2] in higher_is_better()
        verdict = ""
        if other is not None and math.isfinite(value) and value != other:
            verdict = "better" if (value > other) == higher else "worse"
        rows.append({"metric": key, "value": value, "baseline": other, "verdict": verdict})
    compared = [r for r in rows if r["verdict"]]
    wins = sum(r["verdict"] == "better" for r in compared)
    text = ""
    if baseline:
        text = (
            f"torchlab beats the {baseline['name']} baseline on {wins} of {len(compared)} shared metrics."
            if compared
            else f"The {baseline['name']} baseline shares no differing metric with the model."
        )
    return rows, baseline, text
