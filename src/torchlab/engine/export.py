"""Export a trained run to a verified artefact with its sidecar (``torchlab export``).

    >>> torchlab.export("runs/digits/2026-11-25T10-00-00", "onnx")
    PosixPath('runs/digits/2026-11-25T10-00-00/exports/onnx')

The run's kind says what is exported (a supervised model with its preprocessing, an RL
policy); the format (:data:`torchlab.exporters.base.EXPORTERS`) says how. Every export is
verified against the eager model (:mod:`torchlab.exporters.verify`) and written with a
sidecar ``export.json`` (:mod:`torchlab.exporters.sidecar`): the folder is then usable by
``torchlab predict`` and ``torchlab serve`` without the run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torchlab.errors import ExportError, StorageError
from torchlab.files import storage_errors, temporary_dir, write_json
from torchlab.kinds import kind_of_config
from torchlab.memory import keep_freed_memory
from torchlab.run import Run


def export(
    run: Any,
    format: str = "onnx",
    *,
    quantize: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    trust_code: bool = False,
) -> Path:
    """Export a run's best weights, verify parity with the eager model, write the sidecar.

    For an RL run the deterministic policy (observations -> actions) is exported.

    Args:
        run: A :class:`~torchlab.run.Run` or a run directory.
        format: ``torchscript``, ``onnx``, ``exported-program`` or ``mar`` (TorchServe).
        quantize: ``dynamic-int8`` to quantise Linear/LSTM weights to int8, or None.
        output: The export directory (default ``<run>/exports/<format>[-int8]``).
        overwrite: Replace an existing export directory.
        trust_code: Let the run import code it did not record (``--trust-code``).

    Returns:
        The export directory: the artefact, ``export.json`` (and ``model.mar`` for mar).

    Raises:
        ExportError: The format or quantisation is unsupported for this model, or the
            artefact does not match the eager model within tolerance.
    """
    from torchlab.exporters.base import exporter
    from torchlab.exporters.quantize import QUANTIZE_METHODS
    from torchlab.exporters.sidecar import SIDECAR, build_sidecar
    from torchlab.exporters.verify import FLOAT, INT8, verify

    keep_freed_memory()
    run = run if isinstance(run, Run) else Run(run, trust_code=trust_code)
    chosen = exporter(format)
    if quantize is not None and quantize not in QUANTIZE_METHODS:
        raise ExportError(
            f"Unknown quantisation '{quantize}'; use one of: {', '.join(QUANTIZE_METHODS)}."
        )
    target = Path(output) if output is not None else default_output(run.dir, format, quantize)
    if target.exists() and not overwrite:
        raise ExportError(
            f"Export directory '{target}' already exists; pass --overwrite or choose --output."
        )
    replaceable = target.is_dir() and ((target / SIDECAR).is_file() or not any(target.iterdir()))
    if target.exists() and not replaceable:
        raise ExportError(
            f"'{target}' is not a torchlab export (no {SIDECAR}), so --overwrite will not "
            "replace it; choose another --output."
        )
    source = kind_of_config(run.config).exportable(run)
    if source.check is not None:  # formats that cannot hold this model faithfully
        source.check(format, quantize)
    model, kind = source.model, source.kind
    example = kind.example(source.input_shape, batch=2)
    with temporary_dir(target.parent, f".{target.name}.") as staging:
        artefact = staging / chosen.filename
        try:
            with storage_errors(artefact):
                details = chosen.save(model, example, kind, artefact, quantize is not None)
        except (ExportError, StorageError):
            raise
        except Exception as exc:
            raise ExportError(
                f"The model of '{run.dir}' cannot be exported to {format} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "try another --format."
            ) from exc
        tolerance = INT8 if quantize else FLOAT
        reference = source.reference if source.reference is not None else model
        verification = verify(
            reference, chosen.load(artefact), kind, source.input_shape, tolerance, source.compare
        )
        sidecar = build_sidecar(
            format_name=format,
            filename=chosen.filename,
            quantize=quantize,
            run=run,
            source=source,
            details=details,
            verification=verification,
        )
        write_json(staging / SIDECAR, sidecar)
        if hasattr(source.featurizer, "save"):  # side files it needs (tokenizer.json)
            source.featurizer.save(staging)
        if hasattr(chosen, "package"):
            chosen.package(staging, run.config.name)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def default_output(run_dir: Path, format: str, quantize: str | None) -> Path:
    return run_dir / "exports" / (format + ("-int8" if quantize else ""))
