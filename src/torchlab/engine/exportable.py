"""What ``torchlab export`` writes for a supervised run: its trained model with the run's
preprocessing, and what the sidecar says about both."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from torchlab.engine.experiment import load_trained
from torchlab.exporters.inputs import input_kind
from torchlab.exporters.sources import (
    Exportable,
    output_meaning,
    refuse_decoding,
    refusing,
    text_adapter,
)
from torchlab.registry import TASKS
from torchlab.run import Run

SERIES_ARCHIVE = (
    "A TorchServe archive serves inputs that torchlab preprocesses, not forecasting windows; "
    "export a forecaster with --format torchscript, onnx or exported-program."
)
PIXELS_ARCHIVE = (
    "A TorchServe archive's handler answers labels of images, rows and texts, not masks or "
    "boxes; export a segmentation model with --format torchscript, onnx or exported-program."
)


def model_exportable(run: Run) -> Exportable:
    """The run's best weights as an exportable module (refused for decoding tasks)."""
    task = run.config.task.name
    refuse_decoding(task, TASKS.get(task, "task.name").builder.decodes)
    featurizer = run.featurizer
    if featurizer.kind == "series":
        from torchlab.exporters.forecasting import forecast_exportable

        exportable = forecast_exportable(run.spec, featurizer, run.config, load_trained(run))
        return refusing(replace(exportable, featurizer=featurizer), "mar", SERIES_ARCHIVE)
    exportable = replace(supervised_exportable(run), featurizer=featurizer)
    if exportable.kind.name == "pixels":
        return refusing(exportable, "mar", PIXELS_ARCHIVE)
    return exportable


def supervised_exportable(run: Run) -> Exportable:
    from torchlab.exporters.sidecar import STEPS
    from torchlab.tasks import build_task

    spec, kind = run.spec, input_kind(run.featurizer.kind)
    num_outputs = build_task(run.config.task, spec).num_outputs
    description: dict[str, Any] = {
        "model": run.config.model.model_dump(mode="json"),
        "task": run.config.task.model_dump(mode="json"),
        "spec": asdict(spec),
        "output": {
            # Segmentation models return per-pixel logits at the input size.
            "shape": ["batch", num_outputs, *(["height", "width"] * (kind.name == "pixels"))],
            "meaning": output_meaning(run.config.task.name, spec),
        },
        "class_names": list(spec.class_names),
        "target_names": list(spec.target_names),
        "preprocessing": run.featurizer.to_dict(),
        "preprocessing_steps": STEPS.get(kind.name, "see the featurizer named in preprocessing"),
    }
    model = load_trained(run)
    if run.config.task.name == "detection":  # lists of boxes per image, TorchScript only
        from torchlab.exporters.detection import detection_exportable

        shape = tuple(spec.input_shape)
        return detection_exportable(model, Exportable(model, kind, shape, description))
    adapted = text_adapter(model, spec)
    return Exportable(adapted or model, kind, tuple(spec.input_shape), description, model)
