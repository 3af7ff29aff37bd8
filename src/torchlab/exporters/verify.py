"""Parity of an exported artefact with the eager model, at several batch sizes and shapes.

An export that computes something else is worse than none: every export is run on the
input kind's verification inputs and compared with the eager model; over the tolerance it
fails with the measured error instead of leaving a silently different artefact behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from torchlab.errors import ExportError
from torchlab.exporters.base import Runner
from torchlab.exporters.inputs import InputKind, as_tuple


@dataclass(frozen=True)
class Tolerance:
    """Allowed ``max |exported - eager|``: ``atol + rtol * max |eager|`` over the outputs.

    Float exports differ only by operator order and fusion (~1e-6); int8 weights change the
    outputs by a few percent of their scale, so quantised exports get a wider band and their
    label agreement with the eager model is reported beside it.
    """

    atol: float
    rtol: float

    def bound(self, reference: torch.Tensor) -> float:
        return self.atol + self.rtol * reference.abs().max().item()


FLOAT = Tolerance(atol=1e-4, rtol=1e-4)
INT8 = Tolerance(atol=1e-2, rtol=0.1)


def verify(
    model: nn.Module,
    runner: Runner,
    kind: InputKind,
    input_shape: tuple[int, ...],
    tolerance: Tolerance,
    compare: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Compare ``runner`` with ``model`` on every verification input; raise when over tolerance.

    Args:
        compare: ``(expected, got, inputs, tolerance) -> case`` for outputs that are not one
            tensor (see :func:`torchlab.exporters.detection.compare_detections`); the case
            holds ``shape``, ``max_abs_error`` and ``bound``. None compares tensors.

    Returns:
        The tolerance, the worst error and bound, label agreement and one record per input.
    """
    cases, agree, total = [], 0, 0
    for case in kind.verification_inputs(input_shape):
        tensors = as_tuple(case)
        inputs = tensors[0]  # the batch (and any varying length) is read off the first input
        with torch.inference_mode():
            expected = model(*tensors)
        try:
            got = runner(*tensors)
        except Exception as exc:  # any runtime failure is a failed export
            raise ExportError(
                f"The exported model fails on an input shaped {tuple(inputs.shape)} ({exc}); "
                "the model cannot be exported faithfully in this format, try another --format."
            ) from exc
        if compare is not None:
            cases.append(compare(expected, got, inputs, tolerance))
            continue
        expected, got = expected.float(), got.float()
        if got.shape != expected.shape:
            raise ExportError(
                f"The exported model returns shape {tuple(got.shape)} for an input shaped "
                f"{tuple(inputs.shape)}, the eager model {tuple(expected.shape)}; "
                "try another --format."
            )
        error = (got - expected).abs().max().item() if got.numel() else 0.0
        if got.ndim == 2 and got.shape[1] > 1 and kind.name != "series":
            agree += int((got.argmax(1) == expected.argmax(1)).sum())
            total += got.shape[0]
        cases.append(
            {
                "shape": list(inputs.shape),
                "max_abs_error": error,
                "bound": tolerance.bound(expected),
            }
        )
    worst = max(cases, key=lambda c: c["max_abs_error"] - c["bound"])
    failed = [c for c in cases if not c["max_abs_error"] <= c["bound"]]  # NaN fails too
    if failed:
        case = failed[0]
        raise ExportError(
            f"The exported model differs from the eager model by {case['max_abs_error']:.3g} "
            f"(allowed {case['bound']:.3g}) on an input shaped {tuple(case['shape'])}; the "
            "model cannot be exported faithfully in this format, try another --format."
        )
    return {
        "tolerance": asdict(tolerance),
        "max_abs_error": max(c["max_abs_error"] for c in cases),
        "worst_case": worst,
        "label_agreement": agree / total if total else None,
        "cases": cases,
    }
