"""TorchScript: scripted where the model allows, traced otherwise.

``torch.jit`` is deprecated in favour of ``torch.export`` in torch 2.14; TorchScript stays for
users and servers (TorchServe, C++ ``torch::jit::load``) that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from torchlab.exporters.base import EXPORTERS, Runner, quiet_deprecations
from torchlab.exporters.inputs import InputKind, as_tuple
from torchlab.exporters.quantize import quantize_module


@EXPORTERS.register("torchscript")
class TorchScriptExporter:
    name: ClassVar[str] = "torchscript"
    filename: ClassVar[str] = "model.pt"
    quantizable: ClassVar[bool] = True

    def save(
        self, model: nn.Module, example: torch.Tensor, kind: InputKind, path: Path, quantize: bool
    ) -> dict[str, Any]:
        module = quantize_module(model) if quantize else model
        with quiet_deprecations():
            try:
                compiled, method = torch.jit.script(module), "script"
            except Exception:  # any scripting failure falls back to tracing
                # Tracing records one path through the model; verification at several batch
                # sizes then catches shapes the trace baked in.
                compiled = torch.jit.trace(module, as_tuple(example), check_trace=False)
                method = "trace"
            compiled = torch.jit.freeze(compiled.eval()) if not quantize else compiled
            torch.jit.save(compiled, str(path))
        return {"method": method}

    def load(self, path: Path) -> Runner:
        with quiet_deprecations():
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run(*inputs: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return module(*inputs)

        return run
