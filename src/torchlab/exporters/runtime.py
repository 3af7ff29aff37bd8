"""Run a trained model, eager or exported, on raw inputs: the one path predict, serve and
the TorchServe handler share.

A :class:`Predictor` pairs a runner (tensor -> tensor) with the run's featurizer and task, so
an exported artefact is fed exactly the preprocessing the model was trained with.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchlab.errors import DataError, ExportError, TorchlabError, load_problem
from torchlab.exporters.base import Runner, exporter
from torchlab.exporters.inputs import InputKind, input_kind
from torchlab.exporters.sidecar import SIDECAR, read_sidecar
from torchlab.exporters.sources import require_supervised
from torchlab.trust import inside, trusting


@dataclass
class Predictor:
    """A model that takes featurised inputs, with what turns raw input into them and back.

    Attributes:
        runner: Model inputs ``(B, ...)`` -> raw outputs ``(B, K)``.
        spec: The run's DataSpec (input shape, class or target names).
        featurizer: The run's featurizer (raw files, rows or images -> model inputs).
        task: The run's task (raw outputs -> label and probabilities, or values).
        kind: The input kind (dynamic axes, dtype).
        metadata: What ``GET /metadata`` shows (format, source, verification, versions).
    """

    runner: Runner
    spec: Any
    featurizer: Any
    task: Any
    kind: InputKind
    metadata: dict[str, Any] = field(default_factory=dict)

    def __call__(self, inputs: Any, chunk: int = 1024) -> torch.Tensor:
        with torch.inference_mode():
            parts = [self.runner(part) for part in _chunks(inputs, chunk)]
        if isinstance(parts[0], list):  # detectors: one dict of boxes per image
            return [output for part in parts for output in part]  # type: ignore[return-value]
        return torch.cat(parts)

    def records(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        """One JSON-ready prediction per row: label and class probabilities, or values."""
        spec, named = self.spec, self.task.predict(outputs)
        if hasattr(self.featurizer, "decode_predictions"):  # generated ids -> text
            named = self.featurizer.decode_predictions(named)
        rows: list[dict[str, Any]] = [{} for _ in range(len(outputs))]
        for name, values in named.items():
            values = values.tolist() if isinstance(values, torch.Tensor) else list(values)
            for row, value in zip(rows, values, strict=True):
                if name == "label" and isinstance(value, int) and spec.class_names:
                    row[name] = spec.class_names[value]
                elif name == "label" and isinstance(value, list) and spec.class_names:
                    row[name] = [c for c, on in zip(spec.class_names, value, strict=True) if on]
                elif isinstance(value, list):
                    names = spec.class_names or spec.target_names or map(str, range(len(value)))
                    row[name] = dict(zip(names, value, strict=True))
                else:
                    row[name] = value
        return rows

    # Raw inputs that arrive in memory (HTTP, TorchServe) rather than as files.

    def rows_to_inputs(self, rows: list[dict[str, Any]]) -> torch.Tensor:
        """Tabular rows (column -> value) -> model inputs, through the run's featurizer."""
        import pandas as pd

        if self.kind.name != "tabular":
            raise DataError(f"This model takes {self.kind.name} inputs, not table rows.")
        frame = pd.DataFrame.from_records(rows)
        for name in frame.columns:
            numbers = pd.to_numeric(frame[name], errors="coerce")
            bad = [v for v in frame[name] if isinstance(v, float) and not math.isfinite(v)]
            if bad or (numbers.abs() == math.inf).any():
                raise DataError(f"Column '{name}' holds a non-finite number; send finite values.")
        import numpy as np

        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results reported below
            inputs = self.featurizer.transform(frame)
        if not (finite := torch.isfinite(inputs)).all():
            feature = self.featurizer.feature_names[int((~finite).any(0).nonzero()[0])]
            row = int((~finite).any(1).nonzero()[0])
            raise DataError(
                f"Row {row}, column '{feature.partition('=')[0]}' is too large to represent "
                "after scaling; send a value within the range seen in training."
            )
        return inputs

    def images_to_inputs(self, images: list[bytes], max_pixels: int | None = None) -> torch.Tensor:
        """Encoded images (PNG, JPEG, ...) -> model inputs, through the run's featurizer."""
        return self.pixels_to_inputs(self.read_images(images, max_pixels))

    def read_images(self, images: list[bytes], max_pixels: int | None = None) -> list[torch.Tensor]:
        """Encoded images -> their pixels ``(C, h, w)`` in [0, 1] at their own size, each
        checked against ``max_pixels`` before it is decoded."""
        from PIL import Image

        from torchlab.data.images import read_image

        if self.kind.name not in ("image", "pixels"):
            raise DataError(f"This model takes {self.kind.name} inputs, not images.")
        pixels = []
        for i, data in enumerate(images):
            if max_pixels is not None:
                try:
                    with Image.open(io.BytesIO(data)) as image:
                        width, height = image.size
                except Exception:  # reported below as unreadable
                    width = height = 0
                if width * height > max_pixels:
                    raise DataError(
                        f"Image {i} (from 0) has {width}x{height} pixels, over the limit of {max_pixels}; "
                        "send a smaller image."
                    )
            try:
                pixels.append(read_image(io.BytesIO(data), self.featurizer.channels))
            except DataError:
                raise DataError(
                    f"Image {i} (from 0) cannot be decoded; send a PNG, JPEG, BMP, GIF, TIFF or WebP file."
                ) from None
        return pixels

    def pixels_to_inputs(self, pixels: list[torch.Tensor]) -> torch.Tensor:
        """Decoded images (see :meth:`read_images`) -> model inputs ``(B, C, H, W)``."""
        if len({p.shape for p in pixels}) == 1:  # one resize + normalise call for them all
            return self.featurizer.normalize(torch.stack(pixels))
        return torch.stack([self.featurizer.normalize(p.unsqueeze(0))[0] for p in pixels])


def _chunks(inputs: Any, size: int) -> list[Any]:
    """Row chunks of a tensor, or of a dict of tensors sharing their first dimension (texts)."""
    if isinstance(inputs, dict):
        parts = {name: value.split(size) for name, value in inputs.items()}
        return [dict(zip(parts, row, strict=True)) for row in zip(*parts.values(), strict=True)]
    return list(inputs.split(size))


def _ids_only(runner: Runner) -> Runner:
    """An exported text model takes bare token ids (mask and lengths follow from padding)."""

    def run(inputs: Any) -> Any:
        return runner(inputs["ids"] if isinstance(inputs, dict) else inputs)

    return run


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / SIDECAR).is_file()


def load_export(directory: str | Path, trust_code: bool = False) -> Predictor:
    """A predictor for an export directory (``export.json`` and its artefact).

    The folder is data: its artefact is checked before it is loaded, and it may name only
    torchlab's own preprocessing, unless ``trust_code`` (``--trust-code``).
    """
    from torchlab.data import load_featurizer
    from torchlab.data.base import DataSpec
    from torchlab.tasks import build_task

    directory = Path(directory)
    sidecar = read_sidecar(directory)
    require_supervised(sidecar, directory)
    artefact = inside(directory, sidecar["file"], f"'{directory / SIDECAR}'")
    if not artefact.is_file():
        raise ExportError(f"'{artefact}' named in {SIDECAR} is missing; export the run again.")
    spec = DataSpec(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in sidecar["spec"].items()}
    )
    from torchlab.config import TaskConfig

    with trusting(trust_code):  # what the folder names is imported or unpickled only if trusted
        task = build_task(TaskConfig.model_validate(sidecar["task"]), spec)
        runner = _ids_only(load_artefact(sidecar["format"], artefact))
        featurizer = load_featurizer(sidecar["preprocessing"], directory)
    metadata = {k: sidecar[k] for k in ("format", "quantize", "recipe", "input", "output")}
    metadata["verification"] = {
        k: sidecar["verification"][k] for k in ("tolerance", "max_abs_error", "label_agreement")
    }
    metadata["source"] = str(directory)
    return Predictor(runner, spec, featurizer, task, input_kind(sidecar["input"]["kind"]), metadata)


def load_artefact(format_name: str, artefact: Path) -> Runner:
    """The exported artefact as a runner; a damaged file is one line naming it."""
    try:
        return exporter(format_name).load(artefact)
    except TorchlabError:
        raise
    except Exception as exc:  # each runtime has its own errors for a file it cannot read
        raise ExportError(
            f"'{artefact}' cannot be loaded as {format_name} ({load_problem(exc)}); the file is "
            "damaged: export the run again."
        ) from None


def load_run(run: Any, trust_code: bool = False) -> Predictor:
    """A predictor for a run directory's best weights (eager PyTorch)."""
    from torchlab.run import Run
    from torchlab.tasks import build_task

    run = run if isinstance(run, Run) else Run(run, trust_code=trust_code)
    model, spec, featurizer = run.load_model(), run.spec, run.featurizer

    # A model may define ``infer`` for prediction when it differs from ``forward`` (seq2seq
    # models decode, language models generate).
    forward = getattr(model, "infer", model)

    def runner(inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return forward(inputs)

    kind, task = input_kind(featurizer.kind), build_task(run.config.task, spec)
    metadata = {
        "format": "eager",
        "quantize": None,
        "recipe": run.config.name,
        "input": kind.to_dict(spec.input_shape),
        "output": {"shape": ["batch", task.num_outputs]},
        "source": str(run.dir),
    }
    return Predictor(runner, spec, featurizer, task, kind, metadata)


def load_predictor(path: Any, trust_code: bool = False) -> Predictor:
    """A predictor for an export directory or a run directory."""
    if not isinstance(path, (str, Path)):
        return load_run(path)
    if is_export_dir(path):
        return load_export(path, trust_code)
    return load_run(path, trust_code)
