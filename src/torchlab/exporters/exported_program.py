"""``torch.export``: a whole-graph ExportedProgram (``.pt2``), PyTorch's recommended format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.base import EXPORTERS, Runner, quiet_deprecations
from torchlab.exporters.inputs import InputKind


def dynamic_shapes(kind: InputKind, example: torch.Tensor) -> tuple[dict[int, Any]]:
    """``torch.export`` dims for the input kind's dynamic axes (one positional input)."""
    dims = {}
    for axis, name in kind.dynamic_axes.items():
        # min 1 keeps batch 1 valid (torch.export otherwise specialises sizes 0 and 1).
        dims[axis] = torch.export.Dim(name, min=1, max=max(4096, example.shape[axis] * 64))
    return (dims,)


@EXPORTERS.register("exported-program")
class ExportedProgramExporter:
    name: ClassVar[str] = "exported-program"
    filename: ClassVar[str] = "model.pt2"
    quantizable: ClassVar[bool] = False

    def save(
        self, model: nn.Module, example: torch.Tensor, kind: InputKind, path: Path, quantize: bool
    ) -> dict[str, Any]:
        if quantize:
            raise ExportError(
                "--quantize dynamic-int8 is not supported for exported-program (eager int8 "
                "modules do not export); use --format onnx or torchscript with --quantize."
            )
        with quiet_deprecations():
            program = torch.export.export(
                model, (example,), dynamic_shapes=dynamic_shapes(kind, example)
            )
        torch.export.save(program, path)
        return {"dynamic_axes": {str(k): v for k, v in kind.dynamic_axes.items()}}

    def load(self, path: Path) -> Runner:
        module = torch.export.load(path).module()

        def run(inputs: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return module(inputs)

        return run
