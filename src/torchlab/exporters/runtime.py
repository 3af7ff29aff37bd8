"""Run a trained model, eager or exported, on raw inputs: the one path predict, serve and
the TorchServe handler share.

A :class:`Predictor` pairs a runner (tensor -> tensor) with the run's featurizer and task, so
an exported artefact is fed exactly the preprocessing the model was trained with.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchlab.errors import DataError, ExportError, TorchlabError, load_problem
from torchlab.exporters.base import Runner, exporter
from torchlab.exporters.inputs import InputKind, input_kind
from torchlab.exporters.sidecar import SIDECAR, export_files
from torchlab.trust import trusting


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
        intervals: Half-width of the prediction interval per target, in target order, of a
            regression run fitted with ``task.intervals``; None: no intervals.
    """

    runner: Runner
    spec: Any
    featurizer: Any
    task: Any
    kind: InputKind
    metadata: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, float] | None = None

    def __call__(self, inputs: Any, chunk: int = 1024) -> torch.Tensor:
        with torch.inference_mode():
            parts = [self.runner(part) for part in _chunks(inputs, chunk)]
        if isinstance(parts[0], list):  # detectors: one dict of boxes per image
            return [output for part in parts for output in part]  # type: ignore[return-value]
        return torch.cat(parts)

    def predictions(self, outputs: torch.Tensor) -> dict[str, Any]:
        """The task's named predictions of raw outputs, with ``lower`` and ``upper`` interval
        bounds beside a regression's ``prediction`` when the run has intervals."""
        named = self.task.predict(outputs)
        if self.intervals is not None and "prediction" in named:
            values = named["prediction"]
            half = torch.tensor(list(self.intervals.values()), dtype=values.dtype)
            named["lower"], named["upper"] = values - half, values + half
        return named

    def records(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        """One JSON-ready prediction per row: label and class probabilities, or values (with
        their interval bounds)."""
        spec, named = self.spec, self.predictions(outputs)
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

    # Raw inputs that arrive in memory (HTTP, TorchServe, Python) rather than as files.

    def objects_to_inputs(self, objects: Any) -> tuple[Any, list[str]] | None:
        """Model inputs and ids of in-memory data, or None when ``objects`` name files.

        Tables: a DataFrame, a dict of one row, a list of row dicts, or a 2-D array in the
        training columns' order. Texts: a list of strings. Images: PIL images, arrays
        ``(H, W)`` or ``(H, W, C)`` of uint8, tensors ``(C, H, W)`` of floats in [0, 1].
        """
        import numpy as np
        import pandas as pd
        from PIL import Image

        kind = self.featurizer.kind
        items = [objects] if isinstance(objects, (dict, Image.Image)) else objects
        if isinstance(objects, pd.DataFrame):
            items = objects.to_dict("records")
        elif isinstance(objects, (np.ndarray, torch.Tensor)):
            items = list(objects) if kind == "image" or objects.ndim == 2 else [objects]
        items = list(items)
        if not items or all(_names_a_file(i, kind) for i in items):
            return None
        ids = [str(i) for i in range(len(items))]
        if kind == "tabular":
            names = [c.name for c in self.featurizer.columns]
            rows = [i if isinstance(i, dict) else dict(zip(names, np.asarray(i).tolist(), strict=True)) for i in items]  # fmt: skip
            return self.rows_to_inputs(rows), ids
        if kind == "text" and all(isinstance(i, str) for i in items):
            return self.featurizer.texts_to_inputs(items), ids
        if kind == "image":
            return self.pixels_to_inputs([self._pixels(i) for i in items]), ids
        raise DataError(
            f"This run reads {kind} inputs; give file paths, or in memory "
            f"{IN_MEMORY.get(kind, 'nothing else')}."
        )

    def _pixels(self, image: Any) -> torch.Tensor:
        """One in-memory image as ``(C, H, W)`` floats in [0, 1] with the run's channels."""
        import numpy as np
        from PIL import Image

        if isinstance(image, torch.Tensor):
            pixels = image.float()
        else:
            if isinstance(image, np.ndarray):
                image = Image.fromarray(image)
            if not isinstance(image, Image.Image):
                raise DataError(
                    f"Cannot read a {type(image).__name__} as an image; give a PIL image, a "
                    "uint8 array (H, W[, C]) or a float tensor (C, H, W)."
                )
            mode = "L" if self.featurizer.channels == 1 else "RGB"
            pixels = torch.from_numpy(np.array(image.convert(mode))).float().div_(255)
            pixels = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
        if pixels.ndim != 3 or pixels.shape[0] != self.featurizer.channels:
            raise DataError(
                f"An image of shape {tuple(pixels.shape)} does not fit this run, which reads "
                f"({self.featurizer.channels}, H, W) images."
            )
        return pixels

    def rows_to_inputs(self, rows: list[dict[str, Any]]) -> torch.Tensor:
        """Tabular rows (column -> value) -> model inputs, through the run's featurizer."""
        return self.frame_to_inputs(self.rows_to_frame(rows))

    def rows_to_frame(self, rows: list[dict[str, Any]]) -> Any:
        """Tabular rows as the frame ``torchlab predict`` reads from a CSV of them.

        A blank (a missing key, ``None`` or ``""``) becomes NaN, whatever the other rows
        hold, so it is imputed as a blank CSV cell is; numeric columns are float64 and
        categorical ones keep the values given (``2``, ``2.0`` and ``"2"`` are category
        ``'2'``, as in a CSV). Keys that are not trained columns are ignored.

        Raises:
            DataError: A numeric column holds text, a boolean or a non-finite number.
        """
        import pandas as pd

        if self.kind.name != "tabular":
            raise DataError(f"This model takes {self.kind.name} inputs, not table rows.")
        return pd.DataFrame(
            {
                column.name: _numbers(column.name, rows)
                if column.kind == "numeric"
                else pd.Series([_blank_to_none(row.get(column.name)) for row in rows], dtype=object)
                for column in self.featurizer.columns
            },
            index=range(len(rows)),
        )

    def frame_to_inputs(self, frame: Any) -> torch.Tensor:
        """Model inputs ``(N, F)`` for a frame of :meth:`rows_to_frame`; unseen categories
        are encoded as all zeros without a warning (``featurizer.unseen`` lists them)."""
        import numpy as np

        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results reported below
            inputs = self.featurizer.transform(frame, warn=False)
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
        return self.decode_images(images, max_pixels)[0]

    def open_images(self, images: list[bytes], max_pixels: int | None = None) -> list[Any]:
        """Each encoded image opened as a PIL image, its header read but its pixels not yet
        decoded, for :meth:`decode_images`.

        Raises:
            DataError: An image cannot be read, or has more pixels than ``max_pixels`` or
                Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``).
        """
        from PIL import Image

        if self.kind.name not in ("image", "pixels"):
            raise DataError(f"This model takes {self.kind.name} inputs, not images.")
        limits = [n for n in (max_pixels, Image.MAX_IMAGE_PIXELS) if n is not None]
        limit = min(limits) if limits else None
        opened = []
        for i, data in enumerate(images):
            try:
                image = Image.open(io.BytesIO(data))  # over MAX_IMAGE_PIXELS: a warning
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                # Pillow raises over twice MAX_IMAGE_PIXELS, and warns over it (an error
                # where a warnings filter says so).
                over = Image.MAX_IMAGE_PIXELS * (
                    2 if isinstance(exc, Image.DecompressionBombError) else 1
                )
                raise DataError(
                    f"Image {i} (from 0) has over {over} pixels, over the limit of {limit}; "
                    "send a smaller image."
                ) from None
            except Exception:  # any failure to parse a client's bytes is theirs
                raise DataError(_undecodable(i)) from None
            width, height = image.size
            if limit is not None and width * height > limit:
                raise DataError(
                    f"Image {i} (from 0) has {width}x{height} pixels, over the limit of {limit}; "
                    "send a smaller image."
                )
            opened.append(image)
        return opened

    def decode_images(
        self,
        images: list[bytes],
        max_pixels: int | None = None,
        reserve: Callable[[int], AbstractContextManager[Any]] | None = None,
        opened: list[Any] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Encoded images -> model inputs ``(B, C, H, W)`` and each image's own ``(h, w)``.

        Every header is checked (:meth:`open_images`) before any image is decoded, and
        decoded images are resized to the model's size as they come, so only about
        ``FLUSH_PIXELS`` pixels (or one larger image) are held at full size at a time.

        Args:
            images: The encoded files.
            max_pixels: Most pixels in one image.
            reserve: Called with the images' total pixel count before decoding; the context
                manager it returns is held while they are decoded (a server's budget).
            opened: What :meth:`open_images` gave for these images, when already opened.
        """
        if not images:
            raise DataError("No images were given; send at least one.")
        opened = opened if opened is not None else self.open_images(images, max_pixels)
        total = sum(image.width * image.height for image in opened)
        inputs, sizes, pending, held = [], [], [], 0
        with reserve(total) if reserve is not None else nullcontext():
            for i, image in enumerate(opened):
                pixels = self._decode(i, image)  # uint8 (h, w[, C])
                sizes.append(pixels.shape[:2])
                pending.append(pixels)
                held += pixels.shape[0] * pixels.shape[1]
                if held >= FLUSH_PIXELS or i == len(opened) - 1:
                    inputs.append(self.featurizer.uint8_to_inputs(pending))  # (b, C, H, W)
                    pending, held = [], 0
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs), sizes

    def _decode(self, index: int, image: Any) -> Any:
        from torchlab.data.vision.files import image_array

        try:
            with image:
                return image_array(image, self.featurizer.channels)
        except Exception:  # Pillow raises many types on a client's malformed bytes
            raise DataError(_undecodable(index)) from None

    def pixels_to_inputs(self, pixels: list[torch.Tensor]) -> torch.Tensor:
        """Decoded images ``(C, h, w)`` -> model inputs ``(B, C, H, W)``."""
        if len({p.shape for p in pixels}) == 1:  # one resize + normalise call for them all
            return self.featurizer.normalize(torch.stack(pixels))
        return torch.stack([self.featurizer.normalize(p.unsqueeze(0))[0] for p in pixels])


IN_MEMORY = {
    "tabular": "a DataFrame, row dicts or a 2-D array",
    "text": "a list of strings",
    "image": "PIL images, uint8 arrays or float tensors",
}


def _names_a_file(item: Any, kind: str) -> bool:
    """Whether a string given to predict is a path: always, except for a text run, where
    it is one if it exists or looks like a file name (``reviews.csv``) rather than prose."""
    if not isinstance(item, (str, Path)):
        return False
    if isinstance(item, Path) or kind != "text" or Path(item).exists():
        return True
    return not any(c.isspace() for c in item) and Path(item).suffix.lower() in TEXT_FILES


TEXT_FILES = {".csv", ".tsv", ".txt", ".jsonl"}


FLUSH_PIXELS = 1 << 20  # decoded pixels held at full size before they are resized together


def _undecodable(index: int) -> str:
    return (
        f"Image {index} (from 0) cannot be decoded; send a PNG, JPEG, BMP, GIF, TIFF or WebP file."
    )


def _blank_to_none(value: Any) -> Any:
    """A table cell as given, or None for a blank (None or ``""``, a blank CSV cell)."""
    return None if value is None or (isinstance(value, str) and not value) else value


def _numbers(name: str, rows: list[dict[str, Any]]) -> Any:
    """Column ``name`` of ``rows`` as float64, NaN where blank."""
    import numpy as np

    values = np.empty(len(rows))
    for r, row in enumerate(rows):
        value = _blank_to_none(row.get(name))
        if value is None:
            values[r] = np.nan
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(
                f"Row {r}, column '{name}' holds {str(value)[:40]!r}, not a number; send a "
                "number, or null for a blank."
            )
        try:
            values[r] = float(value)
        except OverflowError:  # an integer beyond float's range
            values[r] = math.inf
        if not math.isfinite(values[r]):
            raise DataError(
                f"Row {r}, column '{name}' holds a non-finite number; send a finite value, or "
                "null for a blank."
            )
    return values


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
    sidecar, artefact = export_files(directory)
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
    calibration = sidecar.get("calibration") or {}
    if calibration:
        metadata["calibration"] = calibration
    return Predictor(
        runner,
        spec,
        featurizer,
        task,
        input_kind(sidecar["input"]["kind"]),
        metadata,
        interval_half_widths(calibration, spec, f"'{directory / SIDECAR}'"),
    )


def interval_half_widths(calibration: Any, spec: Any, where: str) -> dict[str, float] | None:
    """The interval half-widths of a calibration record (``calibration.json``, or an export
    sidecar's ``calibration``), checked: one finite, non-negative number per target."""
    intervals = calibration.get("intervals") if isinstance(calibration, dict) else None
    if intervals is None:
        return None
    widths = intervals.get("half_widths") if isinstance(intervals, dict) else None
    valid = isinstance(widths, dict) and all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
        for w in widths.values()
    )
    if not valid or len(widths) != max(1, len(spec.target_names)):
        raise ExportError(
            f"The interval half-widths in {where} are damaged (one finite, non-negative "
            "number per target is expected); export or train the run again."
        )
    return {str(name): float(width) for name, width in widths.items()}


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
