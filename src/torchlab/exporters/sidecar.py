"""The sidecar JSON written beside every artefact: all a user needs to run it elsewhere.

``export.json`` holds the input schema, the preprocessing (the run's featurizer: image size
and normalisation, or column scalers, fills and categories), class or target names, how
outputs become predictions, the verification result and library versions.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from torchlab.errors import ExportError

SIDECAR = "export.json"
STEPS = {
    "image": "decode; convert to 1 channel (L) or 3 (RGB) as 'channels' says; scale pixels to "
    "[0, 1]; resize to 'size' (bilinear, antialiased); subtract 'mean', divide by 'std'; "
    "layout (N, C, H, W) float32",
    "pixels": "decode; convert to RGB; scale pixels to [0, 1]; resize to 'size' (bilinear, "
    "antialiased); no normalisation (the model standardises itself); layout (N, 3, H, W) float32",
    "tabular": "per column in order: numeric -> blank filled with 'fill', then (x - mean) / std; "
    "categorical -> blank filled with 'fill', one-hot over 'categories' (unseen -> zeros); "
    "features concatenated in column order, float32",
}
SCHEMA_VERSION = 1


def versions(format_name: str) -> dict[str, str]:
    import torch

    from torchlab import __version__

    found = {
        "torchlab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    packages = {"onnx": ["onnx", "onnxruntime"], "mar": ["torch-model-archiver"]}
    for package in packages.get(format_name, []):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def build_sidecar(
    *,
    format_name: str,
    filename: str,
    quantize: str | None,
    run: Any,
    source: Any,
    details: dict[str, Any],
    verification: dict[str, Any],
) -> dict[str, Any]:
    """The sidecar of an export of ``source`` (an :class:`~torchlab.exporters.sources.Exportable`)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "format": format_name,
        "file": filename,
        "quantize": quantize,
        "source_run": str(run.dir),
        "recipe": run.config.name,
        "input": source.kind.to_dict(source.input_shape),
        **source.description,
        "format_details": details,
        "verification": verification,
        "versions": versions(format_name),
    }


def read_sidecar(directory: Path) -> dict[str, Any]:
    path = directory / SIDECAR
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(
            f"'{directory}' is not a torchlab export directory (no {SIDECAR}); "
            "create one with: torchlab export RUN_DIR --format onnx"
        ) from None
    except ValueError:
        raise ExportError(f"'{path}' is not valid JSON; export the run again.") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ExportError(
            f"'{path}' has schema version {data.get('schema_version')}, this torchlab reads "
            f"{SCHEMA_VERSION}; export the run again with this version."
        )
    return data


def require_supervised(sidecar: dict[str, Any], directory: Any) -> None:
    """Predict and serve run supervised exports only; say so for a policy or forecaster."""
    if "forecasting" in sidecar:
        raise ExportError(
            f"'{directory}' holds a forecaster, which forecasts from the end of its run's data: "
            "run 'torchlab predict RUN_DIR --horizon N' on the run directory, or feed the "
            "artefact scaled windows as its export.json describes."
        )
    if "spec" not in sidecar:
        raise ExportError(
            f"'{directory}' holds an RL policy (observations -> actions), which predict and "
            "serve do not run; load its artefact directly (torch.jit.load or onnxruntime)."
        )


def export_files(directory: Path) -> tuple[dict[str, Any], Path]:
    """An export folder's sidecar and the artefact it names, checked as predict and serve
    need them: a supervised export, whose artefact lies inside the folder and exists."""
    from torchlab.trust import inside

    sidecar = read_sidecar(directory)
    require_supervised(sidecar, directory)
    artefact = inside(directory, sidecar["file"], f"'{directory / SIDECAR}'")
    if not artefact.is_file():
        raise ExportError(f"'{artefact}' named in {SIDECAR} is missing; export the run again.")
    return sidecar, artefact


def check_export_early(directory: Path, trust_code: bool = False) -> None:
    """Raise what loading the export folder would raise about its files, before torch is
    imported: :func:`export_files`' checks and (unless trusted) an ``exported-program``
    archive that would unpickle or run code."""
    from torchlab.exporters.pt2_check import check_archive

    sidecar, artefact = export_files(directory)
    if sidecar.get("format") == "exported-program" and not trust_code:
        check_archive(artefact)
