"""What every exporter provides, and the registry of formats.

An exporter turns an eval-mode ``nn.Module`` plus an example input into one file, and loads
that file back as a :data:`Runner` (tensors in, a tensor out) with no torchlab model code.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from torchlab.exporters.inputs import InputKind
from torchlab.registry import Registry

EXPORTERS = Registry(
    "export format",
    [
        "torchlab.exporters.torchscript",
        "torchlab.exporters.onnx",
        "torchlab.exporters.exported_program",
        "torchlab.exporters.mar",
    ],
)

# Model inputs (one tensor, or one per graph input in order) -> raw model outputs.
Runner = Callable[..., torch.Tensor]


class Exporter(Protocol):
    """One export format."""

    name: ClassVar[str]
    filename: ClassVar[str]
    quantizable: ClassVar[bool]

    def save(
        self, model: nn.Module, example: torch.Tensor, kind: InputKind, path: Path, quantize: bool
    ) -> dict[str, Any]:
        """Write the artefact to ``path``; returns format details for the sidecar."""
        ...

    def load(self, path: Path) -> Runner:
        """The artefact as a function from a model input batch to model outputs."""
        ...


def exporter(name: str) -> Exporter:
    """The registered exporter for a format name (``onnx``, ``torchscript``, ...)."""
    return EXPORTERS.get(name, "--format").builder()


@contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Hide torch's deprecation notices for TorchScript and eager quantisation.

    They are documented choices here (docs/deployment.md), not something a user can act on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*(quantiz|TorchScript|jit).*")
        yield
