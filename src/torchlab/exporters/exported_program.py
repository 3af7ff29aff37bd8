"""``torch.export``: a whole-graph ExportedProgram (``.pt2``), PyTorch's recommended format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.base import EXPORTERS, Runner, quiet_deprecations
from torchlab.exporters.inputs import InputKind, Inputs, as_tuple
from torchlab.exporters.pt2_check import check_archive
from torchlab.trust import trusted


def dynamic_shapes(kind: InputKind, example: Inputs) -> tuple[dict[int, Any], ...]:
    """``torch.export`` dims for the input kind's dynamic axes, one dict per positional input.

    Inputs share each Dim object, so several inputs keep one batch size. A varying length
    goes up to the example's, the trained one (the featurizer truncates to it, and models
    with a position table of that size constrain it so).
    """
    tensors = as_tuple(example)
    dims = {}
    for axis, name in kind.dynamic_axes.items():
        size = tensors[0].shape[axis]
        # min 1 keeps batch 1 valid (torch.export otherwise specialises sizes 0 and 1).
        dims[axis] = torch.export.Dim(name, min=1, max=max(4096, size * 64) if axis == 0 else size)
    return tuple(dict(dims) for _ in tensors)


@EXPORTERS.register("exported-program")
class ExportedProgramExporter:
    name: ClassVar[str] = "exported-program"
    filename: ClassVar[str] = "model.pt2"
    quantizable: ClassVar[bool] = False

    def save(
        self, model: nn.Module, example: Inputs, kind: InputKind, path: Path, quantize: bool
    ) -> dict[str, Any]:
        if quantize:
            raise ExportError(
                "--quantize dynamic-int8 is not supported for exported-program (eager int8 "
                "modules do not export); use --format onnx or torchscript with --quantize."
            )
        with quiet_deprecations():
            program = torch.export.export(
                model, as_tuple(example), dynamic_shapes=dynamic_shapes(kind, example)
            )
        torch.export.save(program, path)
        return {"dynamic_axes": {str(k): v for k, v in kind.dynamic_axes.items()}}

    def load(self, path: Path) -> Runner:
        module = load_program(path).module()

        def run(*inputs: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return module(*inputs)

        return run


def load_program(path: Path) -> torch.export.ExportedProgram:
    """The one place torchlab calls ``torch.export.load``: the archive is checked first
    (see :mod:`torchlab.exporters.pt2_check`) unless the user trusts it (``--trust-code``)."""
    if not trusted():
        check_archive(path)
    return torch.export.load(path)
