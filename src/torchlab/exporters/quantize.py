"""Dynamic int8 quantisation: int8 weights, activations quantised on the fly per batch.

Linear and LSTM layers (the ones where dynamic quantisation pays) are converted; convolutions
stay float. PyTorch artefacts use eager dynamic quantisation, ONNX ones ONNX Runtime's
``quantize_dynamic`` on the exported float graph, which its kernels run fastest.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.base import quiet_deprecations

QUANTIZE_METHODS = ("dynamic-int8",)
QUANTIZED_LAYERS = (nn.Linear, nn.LSTM)


def quantizable_layers(model: nn.Module) -> int:
    """How many layers dynamic int8 quantisation would convert."""
    return sum(isinstance(m, QUANTIZED_LAYERS) for m in model.modules())


def check_quantizable(model: nn.Module) -> None:
    if not quantizable_layers(model):
        raise ExportError(
            "The model has no Linear or LSTM layer, so --quantize dynamic-int8 would change "
            "nothing; export without --quantize."
        )


def quantize_module(model: nn.Module) -> nn.Module:
    """A dynamically int8-quantised copy of ``model`` (the original is left as it is)."""
    import torch

    check_quantizable(model)
    with quiet_deprecations():
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), set(QUANTIZED_LAYERS), dtype=torch.qint8
        )


def quantize_onnx(source: Path, target: Path) -> None:
    """Quantise an ONNX file's MatMul/Gemm weights to int8 with ONNX Runtime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Linear layers export as MatMul/Gemm; convolutions stay float as in the PyTorch path
    # (ConvInteger was both slower and less accurate on MobileNetV2 here).
    quantize_dynamic(
        source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm", "LSTM"]
    )
