"""ONNX through the torch.export-based exporter, checked with ``onnx.checker``, run in ONNX Runtime."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.base import EXPORTERS, Runner, quiet_deprecations
from torchlab.exporters.exported_program import dynamic_shapes
from torchlab.exporters.inputs import InputKind, Inputs, as_tuple
from torchlab.exporters.quantize import check_quantizable, quantize_onnx

INPUT_NAME = "input"
OUTPUT_NAME = "output"


@EXPORTERS.register("onnx")
class OnnxExporter:
    name: ClassVar[str] = "onnx"
    filename: ClassVar[str] = "model.onnx"
    quantizable: ClassVar[bool] = True

    def save(
        self, model: nn.Module, example: Inputs, kind: InputKind, path: Path, quantize: bool
    ) -> dict[str, Any]:
        import onnx

        if quantize:
            check_quantizable(model)
        names = kind.names if len(kind.names) == len(as_tuple(example)) else (INPUT_NAME,)
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "float.onnx" if quantize else path
            with quiet_deprecations():
                torch.onnx.export(
                    model,
                    as_tuple(example),
                    target,
                    input_names=list(names),
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes=dynamic_shapes(kind, example),
                    external_data=False,
                    verbose=False,
                    dynamo=True,
                )
            if quantize:
                quantize_onnx(target, path)
        proto = onnx.load(str(path))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"The ONNX graph in '{path}' fails onnx.checker: {exc}") from None
        return {
            "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            "input_name": names[0],
            **({"input_names": list(names)} if len(names) > 1 else {}),
            "output_name": OUTPUT_NAME,
        }

    def load(self, path: Path, threads: int | None = None) -> Runner:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        # Idle intra-op threads would otherwise spin for a while after every call, taking the
        # CPU that a server's event loop (or the next request's preprocessing) needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        names = [i.name for i in session.get_inputs()]

        def run(*inputs: torch.Tensor) -> torch.Tensor:
            arrays = [x.detach().cpu().contiguous().numpy() for x in inputs]
            return torch.from_numpy(session.run(None, dict(zip(names, arrays, strict=True)))[0])

        run.session = session  # type: ignore[attr-defined]
        return run
