"""TorchServe archives (``.mar``): the verified TorchScript model, its sidecar and a handler.

The handler (:mod:`torchlab.serve.torchserve_handler`) loads the archive's ``export.json``
and side files and feeds requests through the run's own featurizer, so TorchServe computes what
``torchlab predict`` does. TorchServe is in limited maintenance upstream (see docs).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.base import EXPORTERS, Runner
from torchlab.exporters.inputs import InputKind
from torchlab.exporters.torchscript import TorchScriptExporter

# The file TorchServe's worker runs: packaged into the archive, never imported here (serving
# sits above exporting).
HANDLER = str(Path(__file__).parents[1] / "serve" / "torchserve_handler.py")

ARCHIVE = "model.mar"


@EXPORTERS.register("mar")
class MarExporter:
    name: ClassVar[str] = "mar"
    filename: ClassVar[str] = TorchScriptExporter.filename
    quantizable: ClassVar[bool] = True

    def __init__(self) -> None:
        self.torchscript = TorchScriptExporter()

    def save(
        self, model: nn.Module, example: torch.Tensor, kind: InputKind, path: Path, quantize: bool
    ) -> dict[str, Any]:
        details = self.torchscript.save(model, example, kind, path, quantize)
        return {**details, "archive": ARCHIVE, "handler": "torchserve_handler.py"}

    def load(self, path: Path) -> Runner:
        return self.torchscript.load(path)

    def package(self, directory: Path, name: str) -> Path:
        """Build ``model.mar`` in ``directory`` from its TorchScript file and side files.

        Every other file of the export directory goes in: the sidecar and whatever the
        featurizer saved beside it (a text model's ``tokenizer.json``), which the handler
        reads back from the archive.
        """
        side_files = sorted(
            str(path)
            for path in directory.iterdir()
            if path.is_file() and path.name not in {self.filename, ARCHIVE}
        )
        command = [
            sys.executable, "-m", "model_archiver.model_packaging",
            "--model-name", "model",
            "--version", "1.0",
            "--serialized-file", str(directory / self.filename),
            "--handler", HANDLER,
            "--extra-files", ",".join(side_files),
            "--export-path", str(directory),
            "--force",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ExportError(
                f"torch-model-archiver failed for '{name}': {done.stderr.strip()[-500:]}; "
                "check that torch-model-archiver is installed (pip install 'torchlab[deploy]')."
            )
        return directory / ARCHIVE
